"""Tracking-store plumbing (edge): tracking URI defaults, clients, experiments, reading runs back.

`mlflow` is imported inside functions only.
"""

from __future__ import annotations

import os
from pathlib import Path

from slmscale.errors import UserError
from slmscale.tracking.schema import *  # noqa: F403
from slmscale.tracking.schema import (
    DEFAULT_DB,
    DOWNSTREAM_METRICS,
    KIND_TRAIN,
    M_TEST_LOSS_FINAL,
    TAG_FAILURE,
    TAG_KIND,
    TAG_TRIAL_KEY,
)


def default_tracking_uri(workdir: str | Path | None = None) -> str:
    """`MLFLOW_TRACKING_URI` if set, else a SQLite file in the output root (`slmscale info`).

    MLflow 3 refuses the old `./mlruns` file store, so the local default is SQLite.
    """
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    from slmscale.paths import output_root

    base = Path(workdir) if workdir is not None else output_root()
    return f"sqlite:///{(base / DEFAULT_DB).resolve()}"


def resolve_tracking_uri(flag: str | None, workdir: str | Path | None = None) -> str:
    return flag or default_tracking_uri(workdir)


#: Where a reading command also looks for a store, after the working folder and its parents.
DEMO_STORE = Path("slmscale-demo") / DEFAULT_DB


def reading_tracking_uri(flag: str | None) -> str:
    """The store a command that only *reads* runs (fit, report, status) should open.

    Writers (grid, train) default to `mlflow.db` in the output root and create it.  A reader must
    not: opening a missing SQLite file creates an empty store, and the user is then told that
    their experiment does not exist.  So a reader takes `--tracking-uri`, else
    `$MLFLOW_TRACKING_URI`, else the nearest existing `mlflow.db` in the working folder or a
    parent (the way git finds `.git`: run it anywhere inside the demo's folder), else the demo's
    store below the working folder; failing all that, one line saying where it looked.
    """
    if flag or os.environ.get("MLFLOW_TRACKING_URI"):
        uri = resolve_tracking_uri(flag)
        db = sqlite_path(uri)
        if db is not None and not db.is_file():
            where = "--tracking-uri" if flag else "MLFLOW_TRACKING_URI"
            raise UserError(f"{where}: no MLflow store at {db} (nothing has been tracked there)")
        return uri
    here = Path.cwd().resolve()
    root = Path(os.environ.get("SLMSCALE_HOME") or here).resolve()
    candidates = [root / DEFAULT_DB, *(d / DEFAULT_DB for d in (here, *here.parents))]
    candidates.append(here / DEMO_STORE)
    for db in candidates:
        if db.is_file():
            return f"sqlite:///{db}"
    raise UserError(
        f"no MLflow store found: no {DEFAULT_DB} in {here} or its parents, nor {DEMO_STORE}; "
        "pass --tracking-uri (e.g. sqlite:////path/to/mlflow.db) or set MLFLOW_TRACKING_URI"
    )


def experiment_names(tracking_uri: str) -> list[str]:
    """Names of the live experiments in the store (for messages that say what does exist)."""
    from mlflow.entities import ViewType

    exps = client(tracking_uri).search_experiments(view_type=ViewType.ACTIVE_ONLY)
    return sorted(e.name for e in exps if e.name != "Default")


SQLITE_BUSY_TIMEOUT_S = 60


def with_busy_timeout(tracking_uri: str) -> str:
    """A SQLite URI with a busy timeout, so concurrent writers wait instead of failing with
    "database is locked" (the timeout is a pysqlite connect argument in the URI's query)."""
    if tracking_uri.startswith("sqlite:") and "timeout=" not in tracking_uri:
        sep = "&" if "?" in tracking_uri else "?"
        return f"{tracking_uri}{sep}timeout={SQLITE_BUSY_TIMEOUT_S}"
    return tracking_uri


# ---- a store that is busy is waited for --------------------------------------------------------
# MLflow runs `PRAGMA busy_timeout = 20000` on every SQLite session (overriding `?timeout=`), so a
# writer that holds the database longer than 20 s makes our writes fail with "database is
# locked"; a tracking server can answer 429/503 or drop a connection.  Every call through
# `client()` is retried with backoff on those for TRACKING_RETRY_ENV seconds (default 600).

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


def call_with_retry(fn, what: str, tracking_uri: str, seconds: float | None = None):
    """`fn()`, retried with exponential backoff (0.5 s doubling to 10 s) while the error is
    transient and the window lasts; then a one-line TrackingStoreBusy naming store and call."""
    import time

    window = tracking_retry_seconds() if seconds is None else seconds
    deadline, delay = time.monotonic() + window, 0.5
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if time.monotonic() + delay > deadline:
                text = str(exc).lower()
                first = next((t for t in _TRANSIENT_TEXT if t in text), None) or (
                    (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
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


class _DropTransient:
    """A logging filter that drops records of transient store errors (they are retried)."""

    def filter(self, record) -> bool:
        return not (record.exc_info and is_transient(record.exc_info[1]))


_CLIENTS: dict[str, RetryingClient] = {}


def client(tracking_uri: str) -> RetryingClient:
    """The (per-process, cached) retrying MLflow client of a store.

    Opening a fresh SQLite file creates MLflow's tables; two processes doing it at once race
    (a "table already exists" traceback), so the first open is serialised by a lock file beside
    the database (`<db>.lock`).
    """
    import logging

    cached = _CLIENTS.get(tracking_uri)
    if cached is not None:
        return cached
    from mlflow.tracking import MlflowClient

    # MLflow logs every OperationalError with a traceback before raising it; we retry those.
    # (A filter, not a level: MLflow's logging setup resets the levels of its loggers.)
    store_log = logging.getLogger("mlflow.store.db.utils")
    if not any(isinstance(f, _DropTransient) for f in store_log.filters):
        store_log.addFilter(_DropTransient())
    uri = with_busy_timeout(tracking_uri)
    db = sqlite_path(tracking_uri)
    if db is None:
        inner = call_with_retry(lambda: MlflowClient(tracking_uri=uri), "connect", tracking_uri)
    else:
        with file_lock(db.with_name(db.name + ".lock")):
            inner = call_with_retry(lambda: MlflowClient(tracking_uri=uri), "open", tracking_uri)
    _CLIENTS[tracking_uri] = RetryingClient(inner, tracking_uri)
    return _CLIENTS[tracking_uri]


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (None for a server or an in-memory store)."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    path = tracking_uri[len(prefix) :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


class file_lock:
    """An exclusive `flock` on `path` (created if missing), released on exit or process death."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        os.close(self._fd)  # closing the descriptor releases the lock


def get_or_create_experiment(
    tracking_uri: str, name: str, artifact_location: str | None = None
) -> str:
    """The experiment id for `name`, created once (before trials start: racing creation fails)."""
    c = client(tracking_uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise UserError(
                f"MLflow experiment {name!r} is deleted in {tracking_uri}; restore it or rename the grid"
            )
        return exp.experiment_id
    if artifact_location is None:
        artifact_location = default_artifact_location(tracking_uri, name)
    try:
        return c.create_experiment(name, artifact_location=artifact_location)
    except Exception:  # created concurrently by another driver: the name is unique in the store
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def default_artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Artifacts of a local SQLite store live beside the database file, not in `./mlruns`.

    MLflow's own default is `./mlruns/<id>` relative to whichever process creates the experiment,
    which scatters artifacts over working directories.  A server (http://...) chooses its own.
    """
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    db = Path(tracking_uri[len(prefix) :].split("?", 1)[0])
    return (db.parent / "mlartifacts" / experiment).resolve().as_uri()


def get_experiment_id(tracking_uri: str, name: str) -> str:
    exp = client(tracking_uri).get_experiment_by_name(name)
    if exp is None:
        known = experiment_names(tracking_uri)
        listing = ", ".join(repr(n) for n in known[:20]) if known else "none"
        raise UserError(
            f"no MLflow experiment named {name!r} in {tracking_uri} (experiments there: {listing})"
        )
    return exp.experiment_id


def runs_dataframe(
    tracking_uri: str, experiment_names: list[str], filter_string: str = "", kind: str = KIND_TRAIN
):
    """All runs of the experiments as a DataFrame (mlflow.search_runs columns)."""
    import mlflow

    ids = [get_experiment_id(tracking_uri, n) for n in experiment_names]
    flt = f"tags.`{TAG_KIND}` = '{kind}'"
    if filter_string:
        flt = (
            f"{flt} and ({filter_string})"
            if " or " in filter_string.lower()
            else f"{flt} and {filter_string}"
        )
    mlflow.set_tracking_uri(tracking_uri)
    try:
        return mlflow.search_runs(experiment_ids=ids, filter_string=flt, output_format="pandas")
    except Exception as exc:  # a bad user filter
        raise UserError(f"MLflow filter {filter_string!r}: {str(exc).splitlines()[0]}") from None


def runs_table(tracking_uri: str, experiment_names: list[str], filter_string: str = ""):
    """The fitter's input (DESIGN.md "Runs table") from finished train runs.

    Columns: run_id, params (N), tokens (D), unique_tokens, flops, loss (= test_loss_final),
    model_size, tokenizer, status, and every downstream metric logged.
    """
    import pandas as pd

    df = runs_dataframe(tracking_uri, experiment_names, filter_string)
    cols = {
        "run_id": "run_id",
        "status": "status",
        "params.model_size": "model_size",
        "params.tokenizer": "tokenizer",
        "params.n_params": "params",
        "params.tokens": "tokens",
        "params.unique_tokens": "unique_tokens",
        "params.epochs": "epochs",
        "params.units_dataset": "units_dataset",  # path@hash: where U_D available comes from
        f"metrics.{M_TEST_LOSS_FINAL}": "loss",
        f"tags.{TAG_TRIAL_KEY}": "trial_key",
        f"tags.{TAG_FAILURE}": "failure_reason",
    }
    for m in DOWNSTREAM_METRICS:
        cols[f"metrics.{m}"] = m
    out = pd.DataFrame({new: df[old] if old in df else None for old, new in cols.items()})
    for c in ("params", "tokens", "unique_tokens", "epochs", "loss", *DOWNSTREAM_METRICS):
        out[c] = pd.to_numeric(out[c], errors="coerce")
    out["flops"] = 6.0 * out["params"] * out["tokens"]
    return out.reset_index(drop=True)


def metric_history(tracking_uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) points of one metric, sorted by step."""
    hist = client(tracking_uri).get_metric_history(run_id, key)
    return sorted((m.step, m.value) for m in hist)
