"""RFC 9457 problem+json for every error a service or the gateway returns."""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.types import ExceptionHandlersMap

from shopkit import tracing
from shopkit.context import request_id_var
from shopkit.transient import is_transient

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("shopkit.errors")
# A path prefix as the gateway sends it (X-Forwarded-Prefix: /api): segments of URL-safe characters only.
_PREFIX = re.compile(r"(?:/[A-Za-z0-9._~-]+){1,8}")


def forwarded_prefix(request: Request[Any, Any, Any]) -> str:
    """The public path prefix the gateway put before this service's paths (``/api``), or "" when called directly."""
    prefix = request.headers.get("x-forwarded-prefix", "").rstrip("/")
    return prefix if _PREFIX.fullmatch(prefix) else ""


def public_path(request: Request[Any, Any, Any]) -> str:
    """The path the caller used, for a problem's ``instance``: ``/api/orders/7`` behind the gateway."""
    path = request.url.path
    prefix = forwarded_prefix(request)
    return path if not prefix or path == prefix or path.startswith(prefix + "/") else prefix + path


class ProblemError(HTTPException):
    """An error a caller can cause or act on; rendered as problem+json.

    ``type_`` is a short slug (``email-taken``) turned into a stable problem type URI.
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type_: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail=detail, status_code=status, headers=headers)
        self.type_ = type_
        self.title = title
        self.extensions = extensions


def problem_body(
    status: int,
    detail: str,
    *,
    type_: str | None = None,
    title: str | None = None,
    instance: str | None = None,
    **extensions: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"https://microshop.dev/problems/{type_}" if type_ else "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if rid := request_id_var.get():
        body["request_id"] = rid
    if trace_id := tracing.current_trace_id():
        body["trace_id"] = trace_id
    body.update(extensions)
    return body


def problem_response(
    status: int, detail: str, *, headers: dict[str, str] | None = None, **kwargs: Any
) -> Response[dict[str, Any]]:
    return Response(
        content=problem_body(status, detail, **kwargs),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _validation_errors(exc: ValidationException) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if not isinstance(item, dict):
            continue
        field = item.get("key") or "body"
        errors.append(
            {"field": str(field), "rule": str(item.get("message", "invalid")), "source": item.get("source", "body")}
        )
    return errors


def handle_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    errors = _validation_errors(exc)
    if not errors or (all(e["field"] == "body" for e in errors) and "malformed" in str(exc.detail).lower()):
        return problem_response(400, str(exc.detail), type_="malformed-request", instance=public_path(request))
    detail = "; ".join(f"{e['field']}: {e['rule']}" for e in errors)
    return problem_response(
        422, detail, type_="validation-error", title="Request validation failed",
        instance=public_path(request), errors=errors,
    )


def handle_problem(request: Request[Any, Any, Any], exc: ProblemError) -> Response[dict[str, Any]]:
    return problem_response(
        exc.status_code, exc.detail, type_=exc.type_, title=exc.title, headers=exc.headers,
        instance=public_path(request), **exc.extensions,
    )


def handle_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    headers = dict(exc.headers or {})
    if isinstance(exc, NotAuthorizedException):
        headers.setdefault("WWW-Authenticate", 'Bearer realm="microshop"')
    return problem_response(exc.status_code, str(exc.detail), headers=headers or None, instance=public_path(request))


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    if is_transient(exc):
        # A dependency (MongoDB, Redis) is away or failing over: the caller may retry, it is not a bug.
        log.warning("dependency unavailable on %s %s: %s: %s", request.method, request.url.path,
                    type(exc).__name__, exc)
        return problem_response(503, "A dependency of this service is unavailable; try again shortly.",
                                type_="dependency-unavailable", headers={"Retry-After": "2"},
                                instance=public_path(request))
    # The stack trace goes to the log (with the request id), never to the caller.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(500, "An unexpected error occurred; quote the request id when reporting it.")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ValidationException: handle_validation,
    ProblemError: handle_problem,
    HTTPException: handle_http,
    Exception: handle_unexpected,
}

__all__ = ["EXCEPTION_HANDLERS", "PROBLEM_JSON", "MediaType", "ProblemError", "problem_body", "problem_response"]
