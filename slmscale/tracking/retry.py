"""Waiting out a busy tracking store (edge): retries with backoff on locked SQLite or a busy server.

MLflow runs `PRAGMA busy_timeout = 20000` on every SQLite session (overriding `?timeout=`), so a
writer that holds the database longer than 20 s makes our writes fail with "database is locked";
a tracking server can answer 429/503 or drop a connection.  Every call through
`slmscale.tracking.store.client()` is retried with backoff on those for TRACKING_RETRY_ENV
seconds (default 600).  `mlflow` is not imported here.
"""

from __future__ import annotations

import os

from slmscale.errors import UserError

SQLITE_BUSY_TIMEOUT_S = 60


def with_busy_timeout(tracking_uri: str) -> str:
    """A SQLite URI with a busy timeout, so concurrent writers wait instead of failing with
    "database is locked" (the timeout is a pysqlite connect argument in the URI's query)."""
    if tracking_uri.startswith("sqlite:") and "timeout=" not in tracking_uri:
        sep = "&" if "?" in tracking_uri else "?"
        return f"{tracking_uri}{sep}timeout={SQLITE_BUSY_TIMEOUT_S}"
    return tracking_uri


TRACKING_RETRY_ENV = "SLMSCALE_TRACKING_RETRY_S"
DEFAULT_TRACKING_RETRY_S = 600.0
_TRANSIENT_CODES = {
    "TEMPORARILY_UNAVAILABLE",
    "REQUEST_LIMIT_EXCEEDED",
    "SERVICE_UNDER_MAINTENANCE",
    "DEADLINE_EXCEEDED",
}
_TRANSIENT_TEXT = (
    "database is locked",
    "database table is locked",
    "database is busy",
    "max retries exceeded",
    "connection refused",
    "connection reset",
    "connection aborted",
    "temporarily unavailable",
    "read timed out",
)


class TrackingStoreBusy(UserError):
    """The store stayed locked or unreachable for the whole retry window."""


def tracking_retry_seconds() -> float:
    text = os.environ.get(TRACKING_RETRY_ENV)
    if not text:
        return DEFAULT_TRACKING_RETRY_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise UserError(f"${TRACKING_RETRY_ENV}: expected a number of seconds >= 0, got {text!r}")
    return value


def is_transient(exc: BaseException) -> bool:
    """A store error worth waiting out: a locked SQLite database or a server that is busy/away.

    Not "no such table" or a bad path: those are errors now and would be errors in ten minutes.
    """
    text = str(exc).lower()
    if any(t in text for t in _TRANSIENT_TEXT):
        return True
    code = getattr(exc, "error_code", None)
    return code in _TRANSIENT_CODES and "sqlite" not in text


def call_with_retry(fn, what: str, tracking_uri: str):
    """`fn()`, retried with exponential backoff (0.5 s doubling to 10 s) while the error is
    transient and the window lasts; then a one-line TrackingStoreBusy naming store and call."""
    import time

    window = tracking_retry_seconds()
    deadline, delay = time.monotonic() + window, 0.5
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if time.monotonic() + delay > deadline:
                text = str(exc).lower()
                first = (
                    next((t for t in _TRANSIENT_TEXT if t in text), None)
                    or ((str(exc).strip().splitlines() or [type(exc).__name__])[0][:200])
                )
                raise TrackingStoreBusy(
                    f"MLflow store {tracking_uri}: {what} still failing after {window:g} s of "
                    f"retries ({first}); raise ${TRACKING_RETRY_ENV} to wait longer"
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


class RetryingClient:
    """An MlflowClient whose every method call is retried on transient store errors."""

    def __init__(self, inner, tracking_uri: str) -> None:
        self._inner, self._uri = inner, tracking_uri

    def __getattr__(self, name: str):
        attr = getattr(self._inner, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def call(*args, **kwargs):
            return call_with_retry(lambda: attr(*args, **kwargs), name, self._uri)

        return call


class DropTransientErrors:
    """A logging filter that drops records of transient store errors (they are retried)."""

    def filter(self, record) -> bool:
        return not (record.exc_info and is_transient(record.exc_info[1]))
