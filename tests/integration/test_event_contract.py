"""Every event the running shop publishes validates against its model in the catalogue (shopkit.contracts.events)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from shopkit.contracts.events import CATALOGUE
from tests.support.saga import WireTap, auth, create_product, place_order, wait_for_status


@pytest.fixture
async def all_events(namespace: str) -> AsyncIterator[WireTap]:
    tap = await WireTap(namespace, exchanges=tuple(sorted({m.EXCHANGE for m in CATALOGUE.values()}))).start()
    try:
        yield tap
    finally:
        await tap.close()


async def test_every_published_event_validates_against_its_catalogue_model(
        shop_api: httpx.AsyncClient, admin: str, buyer: str, all_events: WireTap) -> None:
    wire = all_events
    product = await create_product(shop_api, admin, stock=3, low_stock_threshold=1)
    confirmed = await place_order(shop_api, buyer, [(product["id"], 2)])  # stock 3 -> 1: stock_low
    assert (await wait_for_status(shop_api, buyer, confirmed["id"]))["status"] == "confirmed"
    rejected = await place_order(shop_api, buyer, [(product["id"], 5)])
    assert (await wait_for_status(shop_api, buyer, rejected["id"]))["status"] == "rejected"
    r = await shop_api.post(f"/orders/{confirmed['id']}/cancel", headers=auth(buyer))
    assert r.status_code == 200, r.text

    # Every type of the catalogue is produced by this flow; alerts are the last to go out.
    await wire.wait_for(lambda m: m.get("type") == "alert_sent" and m["data"].get("order_id") == confirmed["id"]
                        and m["data"].get("status") == "cancelled")
    await wire.wait_for(lambda m: m.get("type") == "product_updated" and m["data"]["product_id"] == product["id"]
                        and m["data"]["stock"] == 3)
    seen = {m.get("type") for m in wire.messages}
    assert seen >= set(CATALOGUE), f"not seen: {set(CATALOGUE) - seen}"
    for message in wire.messages:
        model = CATALOGUE[message["type"]]
        model.model_validate(message["data"])  # raises on any payload that breaks its contract
