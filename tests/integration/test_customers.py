"""Customers service: registration, login, profile, refresh rotation, and token attacks.

Each behaviour is checked through the gateway (``/api``) and against the service directly,
since services verify tokens themselves and never trust the network.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from devtools.shop import LocalShop
from tests.support.api import bearer, register_and_login, unique_email
from tests.support.tokens import attack_tokens, claims, mint, signing_key

PASSWORD = "correct horse battery"
FAMILY_MAX_AGE = timedelta(days=30)  # MICROSHOP_REFRESH_FAMILY_MAX_AGE_SECONDS' default (the shop keeps it)


@pytest.fixture(params=["gateway", "direct"])
async def client(request: pytest.FixtureRequest, shop: LocalShop) -> AsyncIterator[httpx.AsyncClient]:
    """The public API via the gateway, or the customers service on its own port (same paths, no /api)."""
    if request.param == "gateway" and "gateway" not in shop.procs:
        pytest.fail("the gateway is not part of this checkout's shop")
    base = f"{shop.url('gateway')}/api" if request.param == "gateway" else shop.url("customers")
    async with httpx.AsyncClient(base_url=base, timeout=15.0) as c:
        yield c


async def test_register_login_me(client: httpx.AsyncClient) -> None:
    email = unique_email()
    r = await client.post("/auth/register", json={"email": email, "password": PASSWORD, "name": "Ada"})
    assert r.status_code == 201, r.text
    created = r.json()
    assert set(created) == {"id", "email", "name", "role"}
    # The domain is normalised to lower case (it is case-insensitive); the local part is kept as typed.
    assert created["role"] == "customer" and created["email"] == email.replace("Example.com", "example.com")
    r = await client.post("/auth/login", json={"email": email.upper(), "password": PASSWORD})
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] > 0
    r = await client.get("/customers/me", headers=bearer(tokens["access_token"]))
    assert r.status_code == 200
    assert r.json() == created
    assert r.headers["x-request-id"]


async def test_wrong_password_and_unknown_email_are_401(client: httpx.AsyncClient) -> None:
    tokens = await register_and_login(client)
    for body in ({"email": tokens["email"], "password": "wrong password!"},
                 {"email": unique_email(), "password": PASSWORD}):
        r = await client.post("/auth/login", json=body)
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["detail"] == "invalid email or password"


async def test_duplicate_email_any_case_is_409(client: httpx.AsyncClient) -> None:
    email = unique_email()
    r = await client.post("/auth/register", json={"email": email.lower(), "password": PASSWORD, "name": "A"})
    assert r.status_code == 201
    r = await client.post("/auth/register", json={"email": email.upper(), "password": PASSWORD, "name": "B"})
    assert r.status_code == 409
    assert r.json()["type"].endswith("/email-taken")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "password": PASSWORD, "name": "A"}, "email"),
        ({"email": "a@example.com", "password": "short", "name": "A"}, "password"),
        ({"email": "a@example.com", "password": "1234567890123", "name": "A"}, "password"),
        ({"email": "a@example.com", "password": PASSWORD}, "name"),
        ({"email": "a@example.com", "password": PASSWORD, "name": "A", "role": "admin"}, "role"),
    ],
)
async def test_malformed_register_bodies_name_the_field(
    client: httpx.AsyncClient, body: dict[str, str], field: str
) -> None:
    r = await client.post("/auth/register", json=body)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in problem["errors"]]
    assert all(e["rule"] for e in problem["errors"])


async def test_unparseable_json_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/auth/login", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_bad_tokens_are_401(client: httpx.AsyncClient, key_file: Path) -> None:
    user = await register_and_login(client)
    attacks = attack_tokens(signing_key(key_file), user["id"])
    for name, token in attacks.items():
        r = await client.get("/customers/me", headers=bearer(token))
        assert r.status_code == 401, f"{name}: {r.status_code} {r.text}"
        assert r.headers["content-type"].startswith("application/problem+json"), name
    # The same key and claims, correctly formed, are accepted: the attacks fail for the stated reason.
    good = mint(signing_key(key_file), claims(user["id"]))
    assert (await client.get("/customers/me", headers=bearer(good))).status_code == 200


async def test_missing_token_is_401(client: httpx.AsyncClient) -> None:
    r = await client.get("/customers/me")
    assert r.status_code == 401
    assert "Bearer" in r.headers.get("www-authenticate", "")


async def test_refresh_rotates_and_reuse_revokes_family(client: httpx.AsyncClient) -> None:
    first = await register_and_login(client)
    r = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await client.get("/customers/me", headers=bearer(second["access_token"]))).status_code == 200

    # Reusing the rotated token: refused, and the family (including the fresh token) is revoked.
    r = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 401
    r = await client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert r.status_code == 401

    # Another login starts a new family that works.
    r = await client.post("/auth/login", json={"email": first["email"], "password": PASSWORD})
    third = r.json()
    assert (await client.post("/auth/refresh", json={"refresh_token": third["refresh_token"]})).status_code == 200


async def test_concurrent_refresh_with_one_token_yields_at_most_one_winner(client: httpx.AsyncClient) -> None:
    user = await register_and_login(client)
    results = await asyncio.gather(
        *(client.post("/auth/refresh", json={"refresh_token": user["refresh_token"]}) for _ in range(5))
    )
    assert sorted(r.status_code for r in results).count(200) <= 1
    assert any(r.status_code == 401 for r in results)


async def stored_token(db: AsyncDatabase[Any], refresh_token: str) -> dict[str, Any]:
    token = await db["refresh_tokens"].find_one({"token_hash": hashlib.sha256(refresh_token.encode()).hexdigest()})
    assert token is not None
    return dict(token)


async def family_of(db: AsyncDatabase[Any], refresh_token: str) -> dict[str, Any]:
    family = await db["refresh_families"].find_one({"_id": (await stored_token(db, refresh_token))["family_id"]})
    assert family is not None
    return dict(family)


async def refused_like_an_unknown_token(client: httpx.AsyncClient, refresh_token: str) -> None:
    """The refusal of any invalid refresh token: 401 problem+json ``invalid-refresh-token``, no new pair."""
    unknown = await client.post("/auth/refresh", json={"refresh_token": "never-issued-" + refresh_token[:8]})
    r = await client.post("/auth/refresh", json={"refresh_token": refresh_token})
    assert r.status_code == unknown.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    same = ("type", "title", "status", "detail")
    assert {k: r.json().get(k) for k in same} == {k: unknown.json().get(k) for k in same}
    assert r.json()["type"].endswith("/invalid-refresh-token") and "refresh_token" not in r.json()


async def test_a_login_older_than_the_family_max_age_cannot_be_refreshed(
        client: httpx.AsyncClient, customers_db: AsyncDatabase[Any]) -> None:
    user = await register_and_login(client)
    r = await client.post("/auth/login", json={"email": user["email"], "password": PASSWORD})
    other_login = r.json()
    now = datetime.now(UTC)
    family = await family_of(customers_db, user["refresh_token"])
    assert family["expires_at"] - family["created_at"] == FAMILY_MAX_AGE  # set at login
    # The login started 31 days ago and ended a day ago; its token has not expired itself.
    aged = {"created_at": now - timedelta(days=31), "expires_at": now - timedelta(days=1)}
    await customers_db["refresh_families"].update_one({"_id": family["_id"]}, {"$set": aged})
    assert (await stored_token(customers_db, user["refresh_token"]))["expires_at"] > now
    await refused_like_an_unknown_token(client, user["refresh_token"])
    # The customer's other login is young: it still rotates.
    r = await client.post("/auth/refresh", json={"refresh_token": other_login["refresh_token"]})
    assert r.status_code == 200, r.text


async def test_a_family_stored_without_expiry_ends_its_max_age_after_creation(
        client: httpx.AsyncClient, customers_db: AsyncDatabase[Any]) -> None:
    """A family from before ``expires_at`` existed: created_at + max age is its end, for refusals and expiries."""
    now = datetime.now(UTC)
    old, young = await register_and_login(client), await register_and_login(client)
    for user, age in ((old, timedelta(days=31)), (young, timedelta(days=29))):
        await customers_db["refresh_families"].update_one(
            {"_id": (await family_of(customers_db, user["refresh_token"]))["_id"]},
            {"$set": {"created_at": now - age}, "$unset": {"expires_at": ""}})
    await refused_like_an_unknown_token(client, old["refresh_token"])
    r = await client.post("/auth/refresh", json={"refresh_token": young["refresh_token"]})
    assert r.status_code == 200, r.text
    # Its new token expires with the family (a day from now), not a whole token lifetime from now.
    minted = await stored_token(customers_db, r.json()["refresh_token"])
    assert abs(minted["expires_at"] - (now - timedelta(days=29) + FAMILY_MAX_AGE)) < timedelta(seconds=1)


async def test_a_minted_refresh_token_never_expires_after_its_family(
        client: httpx.AsyncClient, customers_db: AsyncDatabase[Any]) -> None:
    user = await register_and_login(client)
    family = await family_of(customers_db, user["refresh_token"])
    at_login = await stored_token(customers_db, user["refresh_token"])
    assert at_login["created_at"] < at_login["expires_at"] <= family["expires_at"]
    # The login ends in an hour, sooner than a refresh token lives (14 days): the next token ends with it.
    ends = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    await customers_db["refresh_families"].update_one({"_id": family["_id"]}, {"$set": {"expires_at": ends}})
    r = await client.post("/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert r.status_code == 200, r.text
    assert (await stored_token(customers_db, r.json()["refresh_token"]))["expires_at"] == ends


async def test_a_token_whose_family_was_deleted_cannot_be_refreshed(
        client: httpx.AsyncClient, customers_db: AsyncDatabase[Any]) -> None:
    """MongoDB deletes an expired family (TTL): a token of it left over is dead, not a fresh family."""
    user = await register_and_login(client)
    family = await family_of(customers_db, user["refresh_token"])
    assert (await customers_db["refresh_families"].delete_one({"_id": family["_id"]})).deleted_count == 1
    await refused_like_an_unknown_token(client, user["refresh_token"])
    assert await customers_db["refresh_families"].find_one({"_id": family["_id"]}) is None


async def test_patch_me_name_and_password(client: httpx.AsyncClient) -> None:
    user = await register_and_login(client)
    auth = bearer(user["access_token"])
    r = await client.patch("/customers/me", json={"name": "New Name"}, headers=auth)
    assert r.status_code == 200 and r.json()["name"] == "New Name"
    r = await client.patch("/customers/me", json={"password": "another good pass"}, headers=auth)
    assert r.status_code == 403
    r = await client.patch("/customers/me", json={"password": "another good pass", "current_password": PASSWORD},
                           headers=auth)
    assert r.status_code == 200
    # The password change revoked the old refresh token; the new password logs in.
    assert (await client.post("/auth/refresh", json={"refresh_token": user["refresh_token"]})).status_code == 401
    r = await client.post("/auth/login", json={"email": user["email"], "password": "another good pass"})
    assert r.status_code == 200


async def test_jwks_publishes_the_signing_key(client: httpx.AsyncClient, key_file: Path) -> None:
    r = await client.get("/auth/jwks")
    assert r.status_code == 200
    kids = [k["kid"] for k in r.json()["keys"]]
    assert kids == [signing_key(key_file).kid]
    assert all(k["kty"] == "OKP" and k["alg"] == "EdDSA" and "d" not in k for k in r.json()["keys"])


async def test_configured_admin_exists_with_admin_role(client: httpx.AsyncClient) -> None:
    from devtools.shop import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD

    r = await client.post("/auth/login", json={"email": DEV_ADMIN_EMAIL, "password": DEV_ADMIN_PASSWORD})
    assert r.status_code == 200
    me = await client.get("/customers/me", headers=bearer(r.json()["access_token"]))
    assert me.json()["role"] == "admin"
    # Registration can never grant admin.
    r = await client.post("/auth/register", json={"email": unique_email("adm"), "password": PASSWORD,
                                                   "name": "x", "role": "admin"})
    assert r.status_code == 422


async def test_configured_admin_with_an_invalid_email_fails_startup(shop: LocalShop) -> None:
    """A typo in the admin Secret stops customers at start-up with a clear message."""
    from devtools.procs import free_port

    proc = shop.proc_for("customers")
    port = free_port()
    proc.env = {**proc.env, "MICROSHOP_PORT": str(port), "MICROSHOP_ADMIN_EMAIL": "admin@@example.com"}
    proc.ready_url = f"http://127.0.0.1:{port}/health/ready"
    proc.start()
    try:
        with pytest.raises(RuntimeError, match="email"):
            proc.wait_ready(timeout=30)
    finally:
        proc.stop()
