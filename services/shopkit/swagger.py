"""Swagger UI served by the service itself: the assets from a pinned package, no CDN, integrity hashes, a strict CSP.

Every service's own page (``/schema/swagger``, the kit's ``Service``) and the gateway's combined one
(``/api/docs``) are these routes, so each works offline and loads nothing from elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
import json
from dataclasses import dataclass
from html import escape
from pathlib import Path

from litestar import MediaType, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from shopkit.errors import ProblemError

SWAGGER_PACKAGE = "swagger-ui-py"  # pinned in uv.lock; its static/ holds the Swagger UI 5 distribution files
ASSET_TYPES = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "init.js": "text/javascript",
}
# The docs page runs nothing from elsewhere and nothing inline: scripts and styles come from this origin
# only (Swagger UI sets inline style attributes, hence 'unsafe-inline' for styles alone; its icons are
# data: URIs). It can fetch the API on this origin and cannot be framed.
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
DOCS_HEADERS = {
    "Content-Security-Policy": DOCS_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

SWAGGER_HTML = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>__TITLE__</title>
  <link rel="stylesheet" href="__BASE__/swagger-ui.css?v=__VERSION__" integrity="__SRI_CSS__">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="__BASE__/swagger-ui-bundle.js?v=__VERSION__" integrity="__SRI_BUNDLE__"></script>
  <script src="__BASE__/init.js?v=__VERSION__" integrity="__SRI_INIT__"></script>
</body>
</html>
"""

INIT_JS = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({url: __SPEC_URL__, dom_id: "#swagger-ui"});
});
"""


def _sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


@dataclass(frozen=True)
class SwaggerAssets:
    """The Swagger UI files of the pinned package, plus an ``init.js`` pointing at one OpenAPI document."""

    version: str
    files: dict[str, bytes]

    @classmethod
    def load(cls, spec_url: str) -> SwaggerAssets:
        spec = importlib.util.find_spec("swagger_ui")  # located, not imported (its framework glue is not needed)
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(f"the {SWAGGER_PACKAGE} package is not installed")
        static = Path(next(iter(spec.submodule_search_locations))) / "static"
        files = {name: (static / name).read_bytes() for name in ("swagger-ui.css", "swagger-ui-bundle.js")}
        files["init.js"] = INIT_JS.replace("__SPEC_URL__", json.dumps(spec_url)).encode()
        return cls(importlib.metadata.version(SWAGGER_PACKAGE), files)

    def page(self, base: str, title: str = "microshop API") -> str:
        return (SWAGGER_HTML.replace("__TITLE__", escape(title)).replace("__BASE__", base)
                .replace("__VERSION__", self.version)
                .replace("__SRI_CSS__", _sri(self.files["swagger-ui.css"]))
                .replace("__SRI_BUNDLE__", _sri(self.files["swagger-ui-bundle.js"]))
                .replace("__SRI_INIT__", _sri(self.files["init.js"])))


def swagger_routes(page: str, spec_url: str, title: str) -> list[HTTPRouteHandler]:
    """``GET page``: Swagger UI for the document at ``spec_url``; ``GET page/assets/{name}``: its three files."""
    assets = SwaggerAssets.load(spec_url)
    base = f"{page}/assets"
    html = assets.page(base, title)

    @get(page, include_in_schema=False, media_type=MediaType.HTML, sync_to_thread=False)
    def swagger_ui() -> Response[str]:
        """Public. Swagger UI, its assets from this service (pinned package, SRI, CSP)."""
        return Response(html, media_type=MediaType.HTML, headers=DOCS_HEADERS)

    @get(f"{base}/{{name:str}}", include_in_schema=False, sync_to_thread=False)
    def swagger_asset(name: FromPath[str]) -> Response[bytes]:
        """Public. The docs page's scripts and stylesheet (versioned URLs, cached for a day)."""
        data = assets.files.get(name)
        if data is None:
            raise ProblemError(404, f"No docs asset {name!r}.", type_="not-found")
        return Response(data, media_type=ASSET_TYPES[name],
                        headers={**DOCS_HEADERS, "Cache-Control": "public, max-age=86400"})

    return [swagger_ui, swagger_asset]
