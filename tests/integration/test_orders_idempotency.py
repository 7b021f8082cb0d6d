"""``POST /api/orders`` with ``Idempotency-Key``: a retry returns the first order, never a second one."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from tests.support.saga import auth, create_product, new_customer, stock_of, wait_for_status


def body(product_id: str, quantity: int = 1) -> dict[str, object]:
    return {"items": [{"product_id": product_id, "quantity": quantity}]}


async def my_orders(client: httpx.AsyncClient, token: str) -> list[dict[str, object]]:
    r = await client.get("/orders", params={"limit": 100}, headers=auth(token))
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_a_retried_order_with_the_same_key_returns_the_first_order(shop_api: httpx.AsyncClient,
                                                                          admin: str) -> None:
    product = await create_product(shop_api, admin, stock=10)
    me = await new_customer(shop_api)
    headers = {**auth(me), "Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    first = await shop_api.post("/orders", json=body(product["id"]), headers=headers)
    assert first.status_code == 201, first.text
    again = await shop_api.post("/orders", json=body(product["id"]), headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]

    other = await shop_api.post("/orders", json=body(product["id"], 2), headers=headers)
    assert other.status_code == 422, other.text
    assert other.headers["content-type"].startswith("application/problem+json")
    assert other.json()["type"].endswith("/idempotency-key-reused")

    # The key is the customer's own: someone else using it places their own order.
    stranger = await new_customer(shop_api)
    theirs = await shop_api.post("/orders", json=body(product["id"]),
                                 headers={**auth(stranger), "Idempotency-Key": headers["Idempotency-Key"]})
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]

    await wait_for_status(shop_api, me, first.json()["id"])
    assert [o["id"] for o in await my_orders(shop_api, me)] == [first.json()["id"]]
    await wait_for_status(shop_api, stranger, theirs.json()["id"])
    assert await stock_of(shop_api, product["id"]) == 8


async def test_concurrent_retries_with_one_key_place_one_order_and_their_neighbours_theirs(
        shop_api: httpx.AsyncClient, admin: str) -> None:
    product = await create_product(shop_api, admin, stock=50)
    me, neighbour = await new_customer(shop_api), await new_customer(shop_api)
    key = f"k-{uuid.uuid4().hex}"
    # Sent together, they share placement batches: the duplicates must not fail the neighbours' orders.
    same = [shop_api.post("/orders", json=body(product["id"]), headers={**auth(me), "Idempotency-Key": key})
            for _ in range(8)]
    others = [shop_api.post("/orders", json=body(product["id"]), headers=auth(neighbour)) for _ in range(4)]
    answers = await asyncio.gather(*same, *others)
    assert all(r.status_code in (200, 201) for r in answers), [r.text for r in answers]
    assert len({r.json()["id"] for r in answers[:8]}) == 1
    assert sorted(r.status_code for r in answers[:8]) == [200] * 7 + [201]
    assert all(r.status_code == 201 for r in answers[8:])
    assert len(await my_orders(shop_api, me)) == 1
    assert len(await my_orders(shop_api, neighbour)) == 4


async def test_an_unusable_key_is_a_validation_problem(shop_api: httpx.AsyncClient, admin: str, buyer: str) -> None:
    product = await create_product(shop_api, admin)
    r = await shop_api.post("/orders", json=body(product["id"]), headers={**auth(buyer), "Idempotency-Key": "x" * 201})
    assert r.status_code in (400, 422), r.text
