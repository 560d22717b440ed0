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
        return resolve_tracking_uri(flag)
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


def client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=with_busy_timeout(tracking_uri))


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
    except Exception:
        exp = c.get_experiment_by_name(name)  # created concurrently by another process
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
