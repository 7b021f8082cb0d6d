"""Structured logging: JSON in the cluster, readable lines locally, never a secret."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from shopkit import tracing
from shopkit.context import correlation_id_var, request_id_var

# Values that must never reach a log line, whatever a careless call passes in.
_SECRET_PATTERNS = [
    (re.compile(r"\$argon2\w*\$[^\s'\"]+"), "[REDACTED-HASH]"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1[REDACTED]"),
    (re.compile(r"(?i)([\"']?\w*(?:password|passwd|secret|token|private_key|authorization)\w*[\"']?\s*[:=]\s*[\"']?)"
                r"[^\"'\s,}&)]+"), r"\1[REDACTED]"),
    (re.compile(r"(\w+://[^:/\s]+:)[^@\s]+(@)"), r"\1[REDACTED]\2"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"), "[REDACTED-JWT]"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"), "[REDACTED-KEY]"),
]

# uvicorn adds ``color_message`` (the message with ANSI colour codes) to its records: terminal-only,
# never a field of a JSON line.
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "color_message"}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def redact(text: str) -> str:
    for pattern, repl in _SECRET_PATTERNS:
        text = pattern.sub(repl, text)
    return text


class ContextFilter(logging.Filter):
    """Adds the request id and correlation id to every record, and the trace id when tracing is on."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.correlation_id = correlation_id_var.get() or request_id_var.get()
        if tracing.tracing_enabled():
            record.trace_id = tracing.current_trace_id()
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": redact(_ANSI.sub("", record.getMessage())),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and value is not None:
                payload[key] = value if isinstance(value, int | float | bool) else redact(str(value))
        if record.exc_info:
            payload["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(payload, default=str)


class ConsoleFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-5s %(name)s%(ids)s %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        cid = getattr(record, "correlation_id", None)
        trace = getattr(record, "trace_id", None)  # set by ContextFilter while tracing is on
        record.ids = (f" [{cid[:12]}]" if cid else "") + (f" trace={trace}" if trace else "")
        return redact(super().format(record))


def configure_logging(service: str, level: str = "INFO", fmt: str = "console") -> None:
    """Route stdlib, uvicorn, litestar and faststream logs through one redacting handler."""
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "litestar", "faststream", "aiormq", "aio_pika"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # Access logs and per-message broker logs are noise at INFO and cost throughput.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    for noisy in ("aiormq", "aio_pika", "pymongo", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
