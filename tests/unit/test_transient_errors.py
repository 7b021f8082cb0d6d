"""A dependency that is away answers 503 + Retry-After (problem+json), a bug 500."""

from __future__ import annotations

from litestar import Litestar, get
from litestar.testing import TestClient
from pymongo.errors import ServerSelectionTimeoutError

from shopkit.errors import EXCEPTION_HANDLERS


@get("/mongo-away", sync_to_thread=False)
def mongo_away() -> None:
    raise ServerSelectionTimeoutError("127.0.0.1:27017: connection refused")


@get("/bug", sync_to_thread=False)
def bug() -> None:
    raise RuntimeError("a bug")


def test_a_dependency_away_is_503_with_retry_after_and_a_bug_500() -> None:
    app = Litestar([mongo_away, bug], exception_handlers=EXCEPTION_HANDLERS)
    with TestClient(app) as client:
        r = client.get("/mongo-away")
        assert r.status_code == 503 and r.headers["retry-after"] == "2"
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["type"].endswith("/dependency-unavailable")
        assert "27017" not in r.text  # nothing about the infrastructure leaks
        assert client.get("/bug").status_code == 500
