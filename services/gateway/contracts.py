"""Request-body validation at the edge, with the same pydantic models the services use.

A contract is (HTTP method, path template) → model, the path as the service sees it
(``/products/{product_id}``): ``BUILTIN`` below, derived from the services' own handlers (their request
models), the models looked up by name (a missing one is logged and skipped).

A body that is not JSON gets 400; one that breaks the model gets the kit's 422 problem+json
(``errors: [{"field", "rule", "source"}]``), exactly as the service itself would answer.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from litestar.exceptions import ValidationException
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from gateway import edge
from gateway.routing import compile_template
from shopkit.errors import ProblemError

log = logging.getLogger("gateway.contracts")

# method, path template, module, model: every upstream handler whose request body is a shared contract
# (shopkit.contracts), read from the services' route declarations (gateway/edge.py, generated).
BUILTIN: tuple[tuple[str, str, str, str], ...] = edge.CONTRACTS


@dataclass(frozen=True)
class BodyContract:
    method: str
    template: str
    model: type[BaseModel]
    pattern: re.Pattern[str]


class ContractRegistry:
    def __init__(self, contracts: Iterable[tuple[str, str, type[BaseModel]]] = ()) -> None:
        self._by_key: dict[tuple[str, str], BodyContract] = {}
        for method, template, model in contracts:
            self.register(method, template, model)

    def register(self, method: str, template: str, model: type[BaseModel]) -> None:
        method = method.upper()
        self._by_key[(method, template)] = BodyContract(method, template, model, compile_template(template))

    def __len__(self) -> int:
        return len(self._by_key)

    @property
    def contracts(self) -> list[BodyContract]:
        return list(self._by_key.values())

    def find(self, method: str, path: str) -> BodyContract | None:
        method = method.upper()
        # Exact templates before ones with {params}, so /products/search beats /products/{id}.
        candidates = sorted(
            (c for c in self._by_key.values() if c.method == method), key=lambda c: c.template.count("{")
        )
        for contract in candidates:
            if contract.pattern.match(path):
                return contract
        return None

    def validate(self, method: str, path: str, body: bytes) -> None:
        """Raise the problem the service would raise for this body; return quietly when it is acceptable."""
        contract = self.find(method, path)
        if contract is None:
            return
        check_body(contract.model, body)


def check_body(model: type[BaseModel], body: bytes) -> None:
    if not body.strip():
        raise ProblemError(400, "A JSON request body is required.", type_="malformed-request")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProblemError(400, f"The request body is not valid JSON: {exc}", type_="malformed-request") from None
    try:
        model.model_validate(data)
    except PydanticValidationError as exc:
        raise ValidationException(detail="Request body validation failed", extra=validation_errors(exc)) from None


def validation_errors(exc: PydanticValidationError) -> list[dict[str, Any]]:
    """pydantic errors in the shape Litestar hands the kit's handler (``key``, ``message``, ``source``)."""
    return [
        {
            "key": ".".join(str(part) for part in err["loc"]) or None,
            "message": err["msg"],
            "source": "body",
        }
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def load_registry() -> ContractRegistry:
    """The body contracts of ``BUILTIN``."""
    registry = ContractRegistry()
    for method, template, module_name, model_name in BUILTIN:
        try:
            model = getattr(importlib.import_module(module_name), model_name)
        except (ImportError, AttributeError):
            log.warning("body contract %s.%s not found; %s %s is not validated at the gateway",
                        module_name, model_name, method, template)
            continue
        registry.register(method, template, model)
    log.info("validating request bodies of %s", ", ".join(f"{c.method} {c.template}" for c in registry.contracts))
    return registry
