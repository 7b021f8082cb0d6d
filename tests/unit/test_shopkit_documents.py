"""One MongoDB driver: odmantic models over PyMongo's async client, Motor not installed (issue 19)."""

from __future__ import annotations

import importlib.util
from typing import Any

import odmantic
import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient

from customers.models import Customer, RefreshFamily
from shopkit.mongo import Documents, utcnow


def test_motor_is_not_importable_and_odmantic_s_motor_engine_refuses_to_start() -> None:
    assert importlib.util.find_spec("motor") is None
    with pytest.raises(RuntimeError, match="motor is required"):
        odmantic.AIOEngine()


def test_query_expressions_compile_to_the_filter_document() -> None:
    assert Documents.query() == {}
    assert Documents.query(Customer.email_key == "a@example.com") == {"email_key": {"$eq": "a@example.com"}}
    assert Documents.query({"role": "admin"}) == {"role": "admin"}
    both = Documents.query(Customer.email_key == "a@example.com", Customer.role == "admin")
    assert list(both) == ["$and"]
    assert list(both["$and"]) == [{"email_key": {"$eq": "a@example.com"}}, {"role": {"$eq": "admin"}}]
    with pytest.raises(TypeError):
        Documents.query(True)


def test_a_loaded_document_is_a_model_with_nothing_changed_and_the_collection_is_the_model_s() -> None:
    oid = ObjectId()
    raw = {"_id": oid, "email": "A@example.com", "email_key": "a@example.com", "name": "A", "role": "customer",
           "password_hash": "h", "created_at": utcnow(), "updated_at": utcnow()}
    customer = Documents.load(Customer, raw)
    assert customer.id == oid and customer.email == "A@example.com"
    assert customer.__fields_modified__ == set()  # a save right after writes nothing
    customer.name = "B"
    assert customer.__fields_modified__ == {"name"}


async def test_a_model_s_collection_is_its_odmantic_collection_name() -> None:
    client: AsyncMongoClient[Any] = AsyncMongoClient("mongodb://127.0.0.1:1", connect=False)
    try:
        collection = Documents(client["customers"]).get_collection(RefreshFamily)
        assert (collection.database.name, collection.name) == ("customers", RefreshFamily.__collection__)
    finally:
        await client.close()
