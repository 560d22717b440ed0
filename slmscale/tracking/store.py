"""Tracking-store plumbing (edge): tracking URI defaults, clients, experiments, reading runs back.

`mlflow` is imported inside functions only.  The cheap checks (`check_experiments`,
`check_run`) read a SQLite store with the standard library, so a command's `precheck` can name a
wrong experiment or run id before MLflow is imported.  Retrying a busy store:
`slmscale.tracking.retry`.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from pathlib import Path

from slmscale.errors import UserError
from slmscale.tracking.retry import (
    DropTransientErrors,
    RetryingClient,
    call_with_retry,
    with_busy_timeout,
)
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


#: Every command's `--tracking-uri` help: one default store, stated once.
TRACKING_URI_HELP = (
    "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else mlflow.db in the output root: "
    "$SLMSCALE_HOME, else this folder; a command that only reads runs also looks in the "
    "parent folders and in slmscale-demo/)"
)


def add_tracking_uri_argument(parser) -> None:
    """`--tracking-uri`, with the one help text every command shares."""
    parser.add_argument("--tracking-uri", help=TRACKING_URI_HELP)


# ---- cheap checks: a SQLite store read with the standard library ------------------------------
# Importing MLflow takes 3-12 s (sqlalchemy, alembic, the GenAI modules); a wrong experiment
# name or run id should be one line in well under a second.  A SQLite store is one file whose
# `experiments` and `runs` tables answer that directly, read-only.  A server store is not checked
# here: the MLflow client reports its errors.


def _sqlite_rows(tracking_uri: str, query: str, args: tuple = ()) -> list[tuple] | None:
    """Rows of a read-only query on a SQLite store; None when the store is not a readable
    SQLite file (a server, a missing file) or has no MLflow tables yet."""
    import sqlite3

    db = sqlite_path(tracking_uri)
    if db is None or not db.is_file():
        return None
    try:
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return None
    try:
        return con.execute(query, args).fetchall()
    except sqlite3.Error:  # no such table (an empty store), or a store MLflow would reject too
        return None
    finally:
        con.close()


def stored_experiments(tracking_uri: str) -> dict[str, str] | None:
    """name -> lifecycle stage ("active", "deleted") of a SQLite store's experiments, without
    importing MLflow; None when that cannot be read cheaply (then ask MLflow)."""
    rows = _sqlite_rows(tracking_uri, "SELECT name, lifecycle_stage FROM experiments")
    return None if rows is None else dict(rows)


def check_experiments(tracking_uri: str, names: list[str], allow_missing: bool = False) -> None:
    """A UserError naming an experiment that is not in the store (or is deleted), and the ones
    that are; checked before any heavy import where the store is a SQLite file.

    `allow_missing`: for commands that create the experiment (grid, train): only a deleted one
    is an error there.
    """
    stored = stored_experiments(tracking_uri)
    if stored is None:
        return
    for name in names:
        if stored.get(name) == "deleted":
            raise UserError(f"MLflow experiment {name!r} is deleted in {tracking_uri}")
        if name not in stored and not allow_missing:
            raise UserError(unknown_experiment_message(tracking_uri, name, stored))


def unknown_experiment_message(tracking_uri: str, name: str, stored: dict[str, str]) -> str:
    known = sorted(n for n, stage in stored.items() if stage == "active" and n != "Default")
    listing = ", ".join(repr(n) for n in known[:20]) if known else "none"
    return f"no MLflow experiment named {name!r} in {tracking_uri} (experiments there: {listing})"


def check_run(tracking_uri: str, run_id: str) -> None:
    """A UserError when a SQLite store has no (live) run `run_id`; checked without MLflow."""
    rows = _sqlite_rows(
        tracking_uri, "SELECT lifecycle_stage FROM runs WHERE run_uuid = ?", (run_id,)
    )
    if rows is None:
        return
    if not rows:
        raise UserError(f"run {run_id}: not found in {tracking_uri}")
    if rows[0][0] == "deleted":
        raise UserError(f"run {run_id}: deleted in {tracking_uri}")


def experiment_names(tracking_uri: str) -> list[str]:
    """Names of the live experiments in the store (for messages that say what does exist)."""
    from mlflow.entities import ViewType

    exps = client(tracking_uri).search_experiments(view_type=ViewType.ACTIVE_ONLY)
    return sorted(e.name for e in exps if e.name != "Default")


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
    if not any(isinstance(f, DropTransientErrors) for f in store_log.filters):
        store_log.addFilter(DropTransientErrors())
    uri = with_busy_timeout(tracking_uri)
    db = sqlite_path(tracking_uri)
    with file_lock(db.with_name(db.name + ".lock")) if db else nullcontext():
        inner = call_with_retry(
            lambda: MlflowClient(tracking_uri=uri), "open" if db else "connect", tracking_uri
        )
    _CLIENTS[tracking_uri] = RetryingClient(inner, tracking_uri)
    return _CLIENTS[tracking_uri]


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (None for a server or an in-memory store)."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    path = tracking_uri[len(prefix) :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


@contextmanager
def file_lock(path: Path):
    """An exclusive `flock` on `path` (created if missing), released on exit or process death."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


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
        stored = {n: "active" for n in experiment_names(tracking_uri)}
        raise UserError(unknown_experiment_message(tracking_uri, name, stored))
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
