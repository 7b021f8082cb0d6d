"""The orders HTTP API: placement rules, visibility, cancellation and the admin transition table."""

from __future__ import annotations

import httpx

from tests.support.saga import auth, create_product, new_customer, place_order, wait_for_status


async def test_place_order_prices_from_catalog_and_location(shop_api: httpx.AsyncClient, admin: str,
                                                            buyer: str) -> None:
    product = await create_product(shop_api, admin, price=321, name="Catalog name")
    r = await shop_api.post("/orders", json={"items": [{"product_id": product["id"], "quantity": 2}]},
                            headers=auth(buyer))
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["items"] == [{"product_id": product["id"], "name": "Catalog name", "unit_price": 321,
                               "quantity": 2}]
    assert order["total"] == 642 and order["status"] == "pending"
    assert r.headers["location"].endswith(f"/orders/{order['id']}")
    # The client cannot set a price.
    r = await shop_api.post("/orders", headers=auth(buyer), json={
        "items": [{"product_id": product["id"], "quantity": 1, "unit_price": 1}]})
    assert r.status_code in (400, 422)


async def test_invalid_orders_are_refused(shop_api: httpx.AsyncClient, admin: str, buyer: str) -> None:
    eur = await create_product(shop_api, admin, currency="EUR")
    usd = await create_product(shop_api, admin, currency="USD")
    cases = [
        {"items": []},
        {"items": [{"product_id": eur["id"], "quantity": 0}]},
        {"items": [{"product_id": eur["id"], "quantity": 1}] * 2},
        {"items": [{"product_id": "000000000000000000000000", "quantity": 1}]},
        {"items": [{"product_id": eur["id"], "quantity": 1}, {"product_id": usd["id"], "quantity": 1}]},
        {"items": [{"product_id": f"p{i}", "quantity": 1} for i in range(51)]},
    ]
    for body in cases:
        r = await shop_api.post("/orders", json=body, headers=auth(buyer))
        assert r.status_code in (400, 422), (body, r.text)
    assert (await shop_api.post("/orders", json=cases[1])).status_code == 401


async def test_someone_elses_order_is_404_and_admins_see_any(shop_api: httpx.AsyncClient, admin: str,
                                                             buyer: str) -> None:
    product = await create_product(shop_api, admin)
    order = await place_order(shop_api, buyer, [(product["id"], 1)])
    stranger = await new_customer(shop_api)
    assert (await shop_api.get(f"/orders/{order['id']}", headers=auth(stranger))).status_code == 404
    assert (await shop_api.post(f"/orders/{order['id']}/cancel", headers=auth(stranger))).status_code == 404
    assert (await shop_api.get(f"/orders/{order['id']}", headers=auth(admin))).status_code == 200


async def test_my_orders_newest_first_paginated(shop_api: httpx.AsyncClient, admin: str) -> None:
    me = await new_customer(shop_api)
    product = await create_product(shop_api, admin, stock=100)
    placed = [await place_order(shop_api, me, [(product["id"], 1)]) for _ in range(3)]
    r = await shop_api.get("/orders", params={"limit": 2}, headers=auth(me))
    page = r.json()
    assert r.status_code == 200 and page["total"] == 3 and page["limit"] == 2 and page["offset"] == 0
    assert [o["id"] for o in page["items"]] == [placed[2]["id"], placed[1]["id"]]
    r = await shop_api.get("/orders", params={"limit": 2, "offset": 2}, headers=auth(me))
    assert [o["id"] for o in r.json()["items"]] == [placed[0]["id"]]


async def test_admin_transitions_follow_the_table(shop_api: httpx.AsyncClient, admin: str, buyer: str) -> None:
    product = await create_product(shop_api, admin, stock=10)
    order = await place_order(shop_api, buyer, [(product["id"], 1)])
    assert (await wait_for_status(shop_api, buyer, order["id"]))["status"] == "confirmed"
    url = f"/orders/{order['id']}/status"
    assert (await shop_api.post(url, json={"status": "shipped"}, headers=auth(buyer))).status_code == 403
    assert (await shop_api.post(url, json={"status": "delivered"}, headers=auth(admin))).status_code == 409
    assert (await shop_api.post(url, json={"status": "cancelled"}, headers=auth(admin))).status_code in (400, 422)
    r = await shop_api.post(url, json={"status": "shipped"}, headers=auth(admin))
    assert r.status_code == 200 and r.json()["status"] == "shipped"
    assert (await shop_api.post(f"/orders/{order['id']}/cancel", headers=auth(buyer))).status_code == 409
    r = await shop_api.post(url, json={"status": "delivered"}, headers=auth(admin))
    assert r.status_code == 200 and r.json()["status"] == "delivered"
    assert (await shop_api.post(url, json={"status": "shipped"}, headers=auth(admin))).status_code == 409
