"""Refresh-token revocation races, against the real ``Accounts`` on SecantusDB (issue 12).

A revocation (the reuse of a token, or a password change) may land at any moment of a concurrent
refresh. Whatever the interleaving, no token minted by that refresh may still work afterwards.
Each test runs its 100 rounds concurrently in one event loop, so the interleavings vary.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from argon2 import PasswordHasher
from pydantic import SecretStr
from pymongo import AsyncMongoClient

from customers.keys import load_signing_key
from customers.models import Customer, RefreshFamily, RefreshToken
from customers.services import Accounts
from customers.settings import Settings
from shopkit.errors import ProblemError
from shopkit.mongo import Documents

ROUNDS = 100
PASSWORD = "correct horse battery"
# A cheap hash for the stored password (argon2 verifies with the parameters inside the hash).
CHEAP_HASH = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)


@pytest.fixture
async def accounts(mongo_url: str) -> AsyncIterator[Accounts]:
    # An unbounded pool: PyMongo's async pool lets a task that just gave a connection back take the next
    # one ahead of the tasks waiting (Motor queued every operation in order on its threads), so 100
    # refresh loops could hold all 100 connections of the default pool and starve the password changes
    # they loop until.
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_url, tz_aware=True, maxPoolSize=0)
    database = f"race_{uuid.uuid4().hex[:8]}"
    engine = Documents(client[database])
    await engine.configure_database([Customer, RefreshFamily, RefreshToken])
    settings = Settings(mongo_url=SecretStr(mongo_url), mongo_database=database, password_hash_memory_kib=8,
                        password_hash_time_cost=1, password_hash_parallelism=1,
                        password_hash_concurrency=4, password_hash_max_wait_seconds=300)
    try:
        yield Accounts(engine, settings, load_signing_key(settings))
    finally:
        await client.drop_database(database)
        await client.close()


async def new_customer(accounts: Accounts) -> Customer:
    email = f"race-{uuid.uuid4().hex[:12]}@example.com"
    customer = Customer(email=email, email_key=email, name="Racer", password_hash=CHEAP_HASH)  # type: ignore[call-arg]
    return await accounts.engine.save(customer)


async def try_refresh(accounts: Accounts, token: str) -> str | None:
    """The new refresh token, or None when the token was refused (401)."""
    try:
        return str((await accounts.refresh(token))["refresh_token"])
    except ProblemError as exc:
        if exc.status_code != 401:
            raise
        return None


async def test_concurrent_reuse_never_leaves_a_minted_token_alive(accounts: Accounts) -> None:
    async def round_() -> list[str]:
        customer = await new_customer(accounts)
        token = str((await accounts.issue_tokens(customer))["refresh_token"])
        minted = [t for t in await asyncio.gather(try_refresh(accounts, token), try_refresh(accounts, token)) if t]
        assert len(minted) <= 1
        # The loser revoked the family: whatever the winner got must be dead now.
        return [t for t in minted if await try_refresh(accounts, t) is not None]

    survivors = await asyncio.gather(*(round_() for _ in range(ROUNDS)))
    assert sum(len(s) for s in survivors) == 0, f"{sum(map(bool, survivors))} of {ROUNDS} rounds left a live token"


async def test_refresh_racing_a_password_change_never_leaves_a_minted_token_alive(accounts: Accounts) -> None:
    async def round_() -> bool:
        customer = await new_customer(accounts)
        token: str | None = str((await accounts.issue_tokens(customer))["refresh_token"])
        change = asyncio.create_task(accounts.update_profile(customer, None, "another good pass", PASSWORD))
        last = token
        # Keep rotating (a client refreshing in a loop) across the whole password change.
        while not change.done() and token is not None:
            token = await try_refresh(accounts, token)
            last = token or last
        await change
        assert last is not None
        return await try_refresh(accounts, last) is not None

    alive = sum(await asyncio.gather(*(round_() for _ in range(ROUNDS))))
    assert alive == 0, f"{alive} of {ROUNDS} rounds left a token minted during the password change alive"


async def test_a_token_stored_before_families_existed_rotates_once(accounts: Accounts) -> None:
    customer = await new_customer(accounts)
    token = str((await accounts.issue_tokens(customer))["refresh_token"])
    # Such a token has no family and no ``generation`` (a token with one whose family is gone is dead).
    await accounts.engine.get_collection(RefreshFamily).delete_many({"customer_id": str(customer.id)})
    await accounts.engine.get_collection(RefreshToken).update_many(
        {"customer_id": str(customer.id)}, {"$unset": {"generation": ""}})
    fresh = await try_refresh(accounts, token)
    assert fresh is not None
    family = await accounts.engine.find_one(RefreshFamily, RefreshFamily.customer_id == str(customer.id))
    assert family is not None and family.expires_at is not None  # the family it gets ends too
    assert await try_refresh(accounts, token) is None  # reuse: the family is revoked
    assert await try_refresh(accounts, fresh) is None
