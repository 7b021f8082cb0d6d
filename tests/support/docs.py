"""A service's own Swagger UI page (shopkit.swagger): nothing from elsewhere, integrity hashes, a strict CSP."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import httpx


async def assert_self_contained_docs(client: httpx.AsyncClient, page: str, spec_url: str) -> None:
    """``client`` addresses the service's origin; ``page`` is the docs path, ``spec_url`` the document it shows."""
    r = await client.get(page)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"], r.text
    csp = dict(part.strip().split(" ", 1) for part in r.headers["content-security-policy"].split(";"))
    assert csp["default-src"] == "'none'" and csp["script-src"] == "'self'" and csp["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in csp["script-src"] and "unsafe-eval" not in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "http" not in r.text and "//" not in r.text.replace("<!doctype", "")  # no external or CDN URL
    assert "<script>" not in r.text  # no inline script (the CSP would block it)
    refs = re.findall(r'(?:src|href)="([^"]+)" integrity="(sha384-[^"]+)"', r.text)
    assert {ref.split("?")[0].rsplit("/", 1)[-1] for ref, _ in refs} == {
        "swagger-ui.css", "swagger-ui-bundle.js", "init.js"}
    for ref, integrity in refs:
        assert ref.startswith(f"{page}/assets/"), ref
        asset = await client.get(ref)
        assert asset.status_code == 200, ref
        digest = base64.b64encode(hashlib.sha384(asset.content).digest()).decode()
        assert integrity == f"sha384-{digest}", ref  # the hash the browser will check matches what is served
        assert asset.headers["content-type"].startswith("text/css" if ".css?" in ref else "text/javascript")
    init = (await client.get(f"{page}/assets/init.js")).text
    assert json.dumps(spec_url) in init
    assert (await client.get(f"{page}/assets/index.html")).status_code == 404  # only the three files
    spec = await client.get(spec_url)
    assert spec.status_code == 200 and spec.json()["openapi"].startswith("3."), spec.text
