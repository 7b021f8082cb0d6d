"""``/api/docs``: one OpenAPI document for the whole public API, merged from every service.

Each reachable service's ``/schema/openapi.json`` contributes the paths the gateway routes to it,
prefixed with ``/api``; components are merged, and a component one service defines differently
from another is renamed ``<Service><Name>`` (with its ``$ref``s) so neither overwrites the other.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from gateway.routing import API_PREFIX, service_for

CACHE_SECONDS = 30.0
PARTIAL_CACHE_SECONDS = 5.0  # a document missing a service is retried sooner

def _rewrite_refs(node: Any, renames: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value in renames:
                out[key] = renames[value]
            else:
                out[key] = _rewrite_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item, renames) for item in node]
    return node


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details (shopkit.errors); more members by problem type.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "instance": {"type": "string"}, "request_id": {"type": "string"},
    },
    "additionalProperties": True,
}
PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _problem_responses(item: Any) -> Any:
    """Every error answer is problem+json (``shopkit.errors``): document it so, whatever a service's document says."""
    for operation in (item or {}).values() if isinstance(item, dict) else ():
        if not isinstance(operation, dict):
            continue
        for status, response in (operation.get("responses") or {}).items():
            if str(status)[:1] in "45" and isinstance(response, dict) and response.get("content"):
                response["content"] = copy.deepcopy(PROBLEM_CONTENT)
    return item


def merge_openapi(
    docs: Mapping[str, Mapping[str, Any]],
    *,
    title: str = "microshop API",
    version: str = "0.1.0",
    own: Mapping[str, Any] | None = None,
    missing: list[str] | None = None,
) -> dict[str, Any]:
    """Merge ``{service: openapi document}`` into one document for ``/api``.

    ``own`` is the gateway's own document: its ``/api/...`` paths are kept as they are.
    """
    merged: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "The public API of microshop, served by the gateway under /api."},
        "paths": {},
        "components": {},
        "tags": [],
    }
    if missing:
        merged["info"]["description"] += f" Unavailable while this document was built: {', '.join(missing)}."
    tag_names: set[str] = set()

    def add_components(doc: Mapping[str, Any], service: str) -> dict[str, str]:
        renames: dict[str, str] = {}
        for section, items in (doc.get("components") or {}).items():
            target = merged["components"].setdefault(section, {})
            for name, value in (items or {}).items():
                if name in target and target[name] != value:
                    new = f"{service.capitalize()}{name}"
                    while new in target:
                        new = f"{service.capitalize()}{new}"
                    renames[f"#/components/{section}/{name}"] = f"#/components/{section}/{new}"
        return renames

    def absorb(doc: Mapping[str, Any], service: str | None) -> None:
        renames = add_components(doc, service or "gateway")
        doc = _rewrite_refs(copy.deepcopy(dict(doc)), renames)
        for section, items in (doc.get("components") or {}).items():
            target = merged["components"].setdefault(section, {})
            for name, value in (items or {}).items():
                new = renames.get(f"#/components/{section}/{name}", f"#/components/{section}/{name}").rsplit("/", 1)[1]
                target.setdefault(new, value)
        for path, item in (doc.get("paths") or {}).items():
            if service is None:
                if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
                    merged["paths"][path] = item
            elif service_for(path) == service:
                # Only what the gateway routes to this service (not its /health or /schema).
                merged["paths"][API_PREFIX + path] = _problem_responses(item)
        for tag in doc.get("tags") or []:
            if isinstance(tag, dict) and tag.get("name") not in tag_names:
                tag_names.add(tag["name"])
                merged["tags"].append(tag)

    if own is not None:
        absorb(own, None)
    for service, doc in docs.items():
        absorb(doc, service)
    merged["components"].setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    return merged


class DocsCache:
    """Builds the merged document at most once per ``CACHE_SECONDS`` (concurrent callers share one build)."""

    def __init__(self) -> None:
        self._doc: dict[str, Any] | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def get(
        self, session: aiohttp.ClientSession, urls: Mapping[str, str], timeout_seconds: float, own: Mapping[str, Any]
    ) -> dict[str, Any]:
        if self._doc is not None and time.monotonic() < self._expires:
            return self._doc
        async with self._lock:
            if self._doc is not None and time.monotonic() < self._expires:
                return self._doc
            names = list(urls)
            fetched = await asyncio.gather(*(fetch_schema(session, urls[n], timeout_seconds) for n in names))
            docs = {name: doc for name, doc in zip(names, fetched, strict=True) if doc is not None}
            missing = [f"{name}-service" for name in names if name not in docs]
            self._doc = merge_openapi(docs, own=own, missing=missing)
            self._expires = time.monotonic() + (PARTIAL_CACHE_SECONDS if missing else CACHE_SECONDS)
            return self._doc


async def fetch_schema(session: aiohttp.ClientSession, base_url: str, timeout_seconds: float) -> dict[str, Any] | None:
    try:
        async with session.get(
            f"{base_url}/schema/openapi.json",
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
            allow_redirects=False,
        ) as resp:
            if resp.status != 200:
                return None
            doc = await resp.json(content_type=None)
            return doc if isinstance(doc, dict) else None
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
