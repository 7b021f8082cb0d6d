"""The products HTTP API: catalog shapes, admin-only writes, validation, stock rules and the cache."""

from __future__ import annotations

import uuid

import httpx

from tests.support.saga import auth, create_product, stock_of, unique_sku

FIELDS = {"id", "sku", "name", "description", "category", "price", "currency", "stock", "low_stock_threshold"}


async def test_after_a_price_update_the_next_read_returns_the_new_price(
        shop_api: httpx.AsyncClient, admin: str) -> None:
    category = f"cat-{uuid.uuid4().hex[:8]}"
    product = await create_product(shop_api, admin, price=500, category=category)
    # Fill the cache (item and list page), then write.
    for _ in range(2):
        assert (await shop_api.get(f"/products/{product['id']}")).json()["price"] == 500
        assert (await shop_api.get("/products", params={"category": category})).json()["items"][0]["price"] == 500
    r = await shop_api.patch(f"/products/{product['id']}", json={"price": 725}, headers=auth(admin))
    assert r.status_code == 200, r.text
    assert r.json()["price"] == 725
    assert (await shop_api.get(f"/products/{product['id']}")).json()["price"] == 725
    assert (await shop_api.get("/products", params={"category": category})).json()["items"][0]["price"] == 725
    # Stock changes invalidate too.
    r = await shop_api.post(f"/products/{product['id']}/stock", json={"delta": 5}, headers=auth(admin))
    assert r.status_code == 200 and r.json()["stock"] == 15
    assert await stock_of(shop_api, product["id"]) == 15


async def test_create_get_and_shape(shop_api: httpx.AsyncClient, admin: str) -> None:
    product = await create_product(shop_api, admin, price=1999, currency="USD", stock=3, low_stock_threshold=1)
    assert set(product) == FIELDS
    r = await shop_api.get(f"/products/{product['id']}")
    assert r.status_code == 200 and r.json() == product
    assert (await shop_api.get("/products/000000000000000000000000")).status_code == 404
    missing = await shop_api.get("/products/not-an-id")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")


async def test_writes_are_admin_only(shop_api: httpx.AsyncClient, admin: str, buyer: str) -> None:
    body = {"sku": unique_sku(), "name": "X", "category": "c", "price": 1, "currency": "EUR", "stock": 1,
            "low_stock_threshold": 0}
    assert (await shop_api.post("/products", json=body)).status_code == 401
    assert (await shop_api.post("/products", json=body, headers=auth(buyer))).status_code == 403
    product = await create_product(shop_api, admin)
    r = await shop_api.patch(f"/products/{product['id']}", json={"price": 1}, headers=auth(buyer))
    assert r.status_code == 403
    r = await shop_api.post(f"/products/{product['id']}/stock", json={"delta": 1}, headers=auth(buyer))
    assert r.status_code == 403


async def test_duplicate_sku_is_409(shop_api: httpx.AsyncClient, admin: str) -> None:
    product = await create_product(shop_api, admin)
    r = await shop_api.post("/products", headers=auth(admin), json={
        "sku": product["sku"], "name": "Other", "category": "c", "price": 1, "currency": "EUR", "stock": 0,
        "low_stock_threshold": 0})
    assert r.status_code == 409, r.text
    other = await create_product(shop_api, admin)
    r = await shop_api.patch(f"/products/{other['id']}", json={"sku": product["sku"]}, headers=auth(admin))
    assert r.status_code == 409, r.text


async def test_invalid_bodies_are_422_naming_the_field(shop_api: httpx.AsyncClient, admin: str) -> None:
    base = {"sku": unique_sku(), "name": "X", "category": "c", "price": 100, "currency": "EUR", "stock": 1,
            "low_stock_threshold": 0}
    for field, value in [("price", 9.99), ("price", -1), ("currency", "euro"), ("stock", -1), ("sku", "")]:
        r = await shop_api.post("/products", json={**base, field: value}, headers=auth(admin))
        assert r.status_code in (400, 422), (field, value, r.text)
        assert field in r.json()["detail"], r.text
    product = await create_product(shop_api, admin)
    r = await shop_api.patch(f"/products/{product['id']}", json={"stock": 100}, headers=auth(admin))
    assert r.status_code in (400, 422) and "stock" in r.json()["detail"]


async def test_stock_never_goes_below_zero(shop_api: httpx.AsyncClient, admin: str) -> None:
    product = await create_product(shop_api, admin, stock=4)
    r = await shop_api.post(f"/products/{product['id']}/stock", json={"delta": -5}, headers=auth(admin))
    assert r.status_code == 409, r.text
    assert await stock_of(shop_api, product["id"]) == 4
    r = await shop_api.post(f"/products/{product['id']}/stock", json={"delta": -4}, headers=auth(admin))
    assert r.status_code == 200 and r.json()["stock"] == 0


async def test_list_filters_search_sort_and_pagination(shop_api: httpx.AsyncClient, admin: str) -> None:
    category = f"cat-{uuid.uuid4().hex[:8]}"
    tag = uuid.uuid4().hex[:6]
    made = [await create_product(shop_api, admin, category=category, name=f"Lamp {tag} {i}", price=100 * (i + 1),
                                 stock=0 if i == 0 else 5) for i in range(5)]
    r = await shop_api.get("/products", params={"category": category, "sort": "-price", "limit": 2, "offset": 1})
    page = r.json()
    assert r.status_code == 200 and page["total"] == 5 and page["limit"] == 2 and page["offset"] == 1
    assert [p["price"] for p in page["items"]] == [400, 300]
    r = await shop_api.get("/products", params={"category": category, "min_price": 200, "max_price": 400})
    assert sorted(p["price"] for p in r.json()["items"]) == [200, 300, 400]
    r = await shop_api.get("/products", params={"category": category, "in_stock": "true"})
    assert made[0]["id"] not in {p["id"] for p in r.json()["items"]} and r.json()["total"] == 4
    r = await shop_api.get("/products", params={"q": f"LAMP {tag} 3"})
    assert [p["id"] for p in r.json()["items"]] == [made[3]["id"]]
    assert (await shop_api.get("/products", params={"limit": 1000})).status_code in (400, 422)
    assert (await shop_api.get("/products", params={"sort": "bogus"})).status_code in (400, 422)
