"""Failures a retry can fix: a dependency away, failing over or timing out, or a lost race.

Consumers retry them without using up the delivery limit (``shopkit.messaging.bus``); HTTP handlers
answer them 503 with ``Retry-After`` instead of 500 (``shopkit.errors``).
"""

from __future__ import annotations

from pymongo.errors import ConnectionFailure, ExecutionTimeout, PyMongoError, WTimeoutError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class TransientFailure(Exception):
    """A failure a retry can fix (raise or subclass it): retried without using up the delivery limit."""


TRANSIENT_LABELS = ("TransientTransactionError", "RetryableWriteError", "UnknownTransactionCommitResult")
WRITE_CONFLICT = 112


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a failure a retry can fix, as opposed to one the event causes.

    Transient: MongoDB unreachable, failing over or timing out (pymongo's ``ConnectionFailure``
    family: ``AutoReconnect``, ``NetworkTimeout``, ``ServerSelectionTimeoutError``), errors labelled
    ``TransientTransactionError`` / ``RetryableWriteError``, write conflicts, Redis connection
    errors and timeouts, ``TimeoutError``, and :class:`TransientFailure` (a guarded write that lost
    a race, say).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (TransientFailure, ConnectionFailure, ExecutionTimeout, WTimeoutError, TimeoutError,
                                RedisConnectionError, RedisTimeoutError)):
            return True
        if isinstance(current, PyMongoError) and (
                any(current.has_error_label(label) for label in TRANSIENT_LABELS)
                or getattr(current, "code", None) == WRITE_CONFLICT):
            return True
        current = current.__cause__ or current.__context__
    return False
