"""shopkit: the code every microshop service shares, written once.

Settings, logging, problem+json errors, request ids, health, Mongo/Redis/RabbitMQ
wiring, the CloudEvents envelope and JWT verification live here; services hold
only their domain code.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def _import_odmantic_without_motor() -> None:
    """Import odmantic although Motor, which it declares, is not installed.

    The services use odmantic for their document models only and do every database call with
    PyMongo's async client (``shopkit.mongo.Documents``). odmantic 1.1 imports Motor's classes at
    import time (``odmantic.session`` and ``odmantic.engine``, for annotations and a type alias), so a
    stand-in ``motor.motor_asyncio`` lends those names, bound to PyMongo's async classes, while
    odmantic is imported, and is removed right after: nothing named ``motor`` stays importable, and
    odmantic's Motor-based ``AIOEngine`` refuses to start ("motor is required"). Done in the package's
    ``__init__`` because that runs before any ``shopkit`` module (``shopkit.mongo`` imports odmantic
    and re-exports its model layer).
    """
    if "odmantic" in sys.modules or importlib.util.find_spec("motor") is not None:
        return
    from pymongo.asynchronous.client_session import AsyncClientSession
    from pymongo.asynchronous.collection import AsyncCollection
    from pymongo.asynchronous.cursor import AsyncCursor
    from pymongo.asynchronous.database import AsyncDatabase
    from pymongo.asynchronous.mongo_client import AsyncMongoClient

    stand_in = ModuleType("motor.motor_asyncio")
    vars(stand_in).update(AsyncIOMotorClient=AsyncMongoClient, AsyncIOMotorClientSession=AsyncClientSession,
                          AsyncIOMotorCollection=AsyncCollection, AsyncIOMotorCursor=AsyncCursor,
                          AsyncIOMotorDatabase=AsyncDatabase)
    parent = ModuleType("motor")
    vars(parent)["motor_asyncio"] = stand_in
    sys.modules.update({"motor": parent, "motor.motor_asyncio": stand_in})
    try:
        import odmantic.engine
    finally:
        del sys.modules["motor"], sys.modules["motor.motor_asyncio"]
    odmantic.engine.motor = None  # AIOEngine needs the real Motor; the shop uses shopkit.mongo.Documents


_import_odmantic_without_motor()
