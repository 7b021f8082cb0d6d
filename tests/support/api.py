"""Helpers for the public API (``/api`` on the gateway): unique accounts, logging in, bearer headers."""

from __future__ import annotations

import uuid

import httpx

from devtools.shop import LocalShop


def api_client(shop: LocalShop, timeout: float = 15.0) -> httpx.AsyncClient:
    """A client for a shop's public API, ``/api`` on its gateway (``async with api_client(shop) as api``)."""
    return httpx.AsyncClient(base_url=f"{shop.url('gateway')}/api", timeout=timeout)


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@Example.com"


async def register_and_login(api: httpx.AsyncClient, email: str | None = None,
                             password: str = "correct horse battery") -> dict[str, str]:
    email = email or unique_email()
    r = await api.post("/auth/register", json={"email": email, "password": password, "name": "Test User"})
    assert r.status_code == 201, r.text
    r = await api.post("/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return {**r.json(), "email": email, "id": (await me(api, r.json()["access_token"]))["id"]}


async def me(api: httpx.AsyncClient, token: str) -> dict[str, str]:
    r = await api.get("/customers/me", headers=bearer(token))
    assert r.status_code == 200, r.text
    return dict(r.json())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
