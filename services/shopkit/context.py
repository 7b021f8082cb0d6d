"""Per-request / per-message context carried into every log line and event."""

from __future__ import annotations

from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
correlation_id_var: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def current_correlation_id() -> str | None:
    """The correlation id of the work in progress: the message's, else the HTTP request's."""
    return correlation_id_var.get() or request_id_var.get()
