"""No one hoards the stock (issue 23): caps per order line, per order and per customer and product.

Against the session shop's defaults (``MICROSHOP_ORDER_MAX_QUANTITY_PER_LINE`` 20,
``..._PER_ORDER`` 50, ``MICROSHOP_ORDER_MAX_OUTSTANDING_PER_PRODUCT`` 50), through the gateway.
"""

from __future__ import annotations

import asyncio

import httpx

from tests.support.saga import auth, create_product, new_customer, place_order, wait_for_status

PER_LINE, PER_ORDER, OUTSTANDING = 20, 50, 50


def order_body(*lines: tuple[str, int]) -> dict[str, object]:
    return {"items": [{"product_id": p, "quantity": q} for p, q in lines]}


def assert_problem(r: httpx.Response, status: int, type_: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = dict(r.json())
    assert body["type"] == f"https://microshop.dev/problems/{type_}", body
    return body


async def test_one_line_and_one_order_are_capped(shop_api: httpx.AsyncClient, admin: str, buyer: str) -> None:
    products = [(await create_product(shop_api, admin, stock=1000))["id"] for _ in range(3)]
    r = await shop_api.post("/orders", json=order_body((products[0], PER_LINE + 1)), headers=auth(buyer))
    body = assert_problem(r, 422, "line-quantity-limit")
    assert body["errors"] == [{"field": "items[0].quantity", "source": "body",
                               "rule": f"at most {PER_LINE} per line"}]
    over = [(products[0], PER_LINE), (products[1], PER_LINE), (products[2], PER_ORDER - 2 * PER_LINE + 1)]
    r = await shop_api.post("/orders", json=order_body(*over), headers=auth(buyer))
    body = assert_problem(r, 422, "order-quantity-limit")
    assert str(PER_ORDER) in str(body["detail"])
    assert body["title"] != assert_problem(
        await shop_api.post("/orders", json=order_body((products[0], PER_LINE + 1)), headers=auth(buyer)),
        422, "line-quantity-limit")["title"]
    # Exactly at the caps is a normal order.
    order = await place_order(shop_api, buyer, [(products[0], PER_LINE), (products[1], PER_LINE),
                                                (products[2], PER_ORDER - 2 * PER_LINE)])
    assert sum(line["quantity"] for line in order["items"]) == PER_ORDER


async def test_open_orders_of_one_product_are_capped_per_customer(shop_api: httpx.AsyncClient, admin: str,
                                                                  buyer: str) -> None:
    product = (await create_product(shop_api, admin, stock=1000))["id"]
    other = (await create_product(shop_api, admin, stock=1000))["id"]
    first = await place_order(shop_api, buyer, [(product, PER_LINE)])
    await wait_for_status(shop_api, buyer, first["id"], {"confirmed"})  # confirmed, not shipped: still counts
    await place_order(shop_api, buyer, [(product, PER_LINE)])  # pending
    r = await shop_api.post("/orders", json=order_body((product, OUTSTANDING - 2 * PER_LINE + 1)),
                            headers=auth(buyer))
    body = assert_problem(r, 409, "outstanding-quantity-limit")
    assert body["errors"] == [{"field": "items[0].quantity", "source": "body",
                               "rule": f"{2 * PER_LINE} already in open orders, at most {OUTSTANDING} per product"}]
    # Up to the cap is fine; another product is not affected; nor is another customer.
    await place_order(shop_api, buyer, [(product, OUTSTANDING - 2 * PER_LINE), (other, PER_LINE)])
    await place_order(shop_api, await new_customer(shop_api), [(product, PER_LINE)])
    # Admins (staff) have no outstanding cap; the per-line and per-order caps apply to them too.
    for _ in range(OUTSTANDING // PER_LINE + 1):
        await place_order(shop_api, admin, [(product, PER_LINE)])
    assert_problem(await shop_api.post("/orders", json=order_body((product, PER_LINE + 1)), headers=auth(admin)),
                   422, "line-quantity-limit")
    # A cancelled order no longer counts.
    r = await shop_api.post(f"/orders/{first['id']}/cancel", headers=auth(buyer))
    assert r.status_code == 200, r.text
    await place_order(shop_api, buyer, [(product, PER_LINE)])


async def test_concurrent_orders_cannot_overrun_the_outstanding_cap(shop_api: httpx.AsyncClient, admin: str,
                                                                    buyer: str) -> None:
    product = (await create_product(shop_api, admin, stock=1000))["id"]
    answers = await asyncio.gather(*(shop_api.post("/orders", json=order_body((product, PER_LINE)),
                                                   headers=auth(buyer)) for _ in range(6)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [201] * (OUTSTANDING // PER_LINE) + [409] * (6 - OUTSTANDING // PER_LINE), \
        [r.text for r in answers]


async def test_retries_of_one_order_are_replayed_not_counted_again(shop_api: httpx.AsyncClient, admin: str,
                                                                   buyer: str) -> None:
    product = (await create_product(shop_api, admin, stock=1000))["id"]
    headers = {**auth(buyer), "Idempotency-Key": f"limits-{product}"}
    answers = await asyncio.gather(*(shop_api.post("/orders", json=order_body((product, PER_LINE)), headers=headers)
                                     for _ in range(4)))  # 4 x 20 would pass the cap of 50 if counted
    assert sorted(r.status_code for r in answers) == [200, 200, 200, 201], [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
