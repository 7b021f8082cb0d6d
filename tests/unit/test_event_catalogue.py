"""The event catalogue is the one definition of every event: the AsyncAPI document and the consumers follow it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from devtools import asyncapi
from shopkit.contracts.events import CATALOGUE, OrderCreated, OrderUpdated
from shopkit.events import EXCHANGE_OF, new_event

DOC = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


def test_asyncapi_document_is_current() -> None:
    assert DOC.read_text() == asyncapi.render(), "docs/asyncapi.json is stale: run `make asyncapi`"


def test_every_event_type_has_a_model_an_exchange_and_a_producer() -> None:
    assert set(CATALOGUE) == set(EXCHANGE_OF) == set(asyncapi.producers())
    doc = json.loads(DOC.read_text())
    for type_, model in CATALOGUE.items():
        assert f"{model.EXCHANGE}.{type_}:publish" in doc["channels"]
        assert f"{model.__name__}Event" in doc["components"]["schemas"]


def test_every_subscription_is_of_a_catalogued_event_and_documented() -> None:
    doc = json.loads(DOC.read_text())
    consumed = set()
    for service in asyncapi.CONSUMERS:
        for sub in asyncapi.service_bus(service).subscriptions:
            assert sub.routing_key in CATALOGUE
            assert f"{sub.queue.name}:consume" in doc["channels"]
            consumed.add(sub.routing_key)
    assert consumed == set(CATALOGUE)  # nothing is published that nobody reads


def test_payloads_are_tolerant_readers_but_strict_on_what_they_name() -> None:
    good = {"order_id": "o", "customer_id": "c", "items": [{"product_id": "p", "unit_price": 5, "quantity": 1}],
            "total": 5, "currency": "EUR", "created_at": "2026-11-27T10:00:00Z", "added_later": True}
    assert OrderCreated.model_validate(good).total == 5
    with pytest.raises(ValidationError):
        OrderCreated.model_validate({**good, "total": -1})


def test_order_updated_is_routed_by_its_new_status_and_products_binds_only_to_what_it_releases() -> None:
    assert OrderUpdated.routing_key({"new_status": "confirmed"}) == "order_updated.confirmed"
    assert OrderCreated.routing_key({"status": "pending"}) == "order_created"
    event = new_event(OrderUpdated(order_id="o", customer_id="c", new_status="cancelled"), "test")
    assert event.routing_key == "order_updated.cancelled"
    assert OrderUpdated.binding_keys() == ("order_updated.#",)
    assert OrderCreated.binding_keys() == ("order_created",)
    with pytest.raises(ValueError, match="routed by its type only"):
        OrderCreated.binding_keys({"pending"})
    bindings = {(service, sub.routing_key): sub.bindings for service in asyncapi.CONSUMERS
                for sub in asyncapi.service_bus(service).subscriptions}
    assert bindings["products", "order_updated"] == ("order_updated.cancelled", "order_updated.rejected")
    assert bindings["alerts", "order_updated"] == bindings["analytics", "order_updated"] == ("order_updated.#",)
    # Each queue's own binding (its subscriber binds it on start) is the first.
    for service in asyncapi.CONSUMERS:
        for sub in asyncapi.service_bus(service).subscriptions:
            assert sub.queue.routing_key == sub.bindings[0]
            assert sub.queue.name.endswith(f"{service}.{sub.routing_key}")  # queue names unchanged
