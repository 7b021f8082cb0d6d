"""docs/architecture.md names every route each service serves and every event on its exchange.

The contract is prose a reader trusts; a route or event added without it would make it quietly wrong.
Routes come from each app's own OpenAPI document (building an app connects to nothing).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from shopkit.events import EXCHANGE_OF
from tests.support.services import CHART_ORDER

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
SERVICES = CHART_ORDER
METHODS = ("get", "post", "put", "patch", "delete")


def documented_routes(text: str) -> set[tuple[str, str]]:
    """``(METHOD, /path)`` of every ``METHOD /path`` written in code spans; ``{anything}`` reads as ``{id}``."""
    found = set()
    for method, path in re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`?\s]*)", text):
        path = re.sub(r"\{[^}]+\}", "{id}", path.rstrip("/") or "/")
        # ``/<service>/...``: a route every (consuming) service serves under its own prefix.
        for service in SERVICES if "<service>" in path else ("<service>",):
            found.add((method, path.replace("<service>", service)))
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_every_route_of_the_service_is_in_the_contract(service: str) -> None:
    settings = importlib.import_module(f"{service}.settings").Settings()
    app = importlib.import_module(f"{service}.app").create_app(settings)
    paths = app.openapi_schema.to_schema()["paths"]
    served = {(method.upper(), re.sub(r"\{[^}]+\}", "{id}", path.rstrip("/") or "/"))
              for path, item in paths.items() for method in item if method in METHODS}
    missing = served - documented_routes(DOC.read_text())
    assert not missing, f"docs/architecture.md does not describe these {service} routes: {sorted(missing)}"


def test_every_event_type_is_in_the_contract_with_its_exchange() -> None:
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("| `")]
    for event_type, exchange in EXCHANGE_OF.items():
        row = next((r for r in rows if f"| `{event_type}` |" in r), None)
        assert row is not None, f"docs/architecture.md has no row for the event {event_type}"
        assert row.startswith(f"| `{exchange}` |"), f"{event_type} is published on {exchange}: {row}"
