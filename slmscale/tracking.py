"""The MLflow schema and adapter: the one module that spells MLflow names.

Platform edge.  `mlflow` is imported lazily inside functions so that the schema constants can be
read by anyone (the pure core never calls this module, but the CLI and tests read the names).

Run identity is ours, not MLflow's: a trial's `slmscale.trial_key` tag maps it to exactly one run.
`open_trial_run` finds it (FINISHED -> skip, anything else -> resume the same run id) or creates it
with status RUNNING and every param before training starts.  Metrics use step = tokens seen, so the
curves in the MLflow UI are loss against data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from slmscale.errors import UserError

# ---- tags -------------------------------------------------------------------------------------
TAG_KIND = "slmscale.kind"  # "train" | "fit" | "eval"
TAG_TRIAL_KEY = "slmscale.trial_key"
TAG_GRID = "slmscale.grid"
TAG_FAILURE = "slmscale.failure_reason"
TAG_VERSION = "slmscale.version"
KIND_TRAIN, KIND_FIT, KIND_EVAL = "train", "fit", "eval"

# ---- params (DESIGN.md "MLflow run schema") ---------------------------------------------------
PARAM_NAMES = (
    "model_size", "n_params", "n_params_total", "n_layers", "d_model", "n_heads", "tokens",
    "unique_tokens", "epochs", "batch_size", "context", "steps", "warmup_steps", "lr_max", "lr_min",
    "weight_decay", "tokenizer", "units_dataset", "seed",
)

# ---- metrics ----------------------------------------------------------------------------------
M_TRAIN_LOSS = "train_loss"
M_TEST_LOSS = "test_loss"
M_FLOPS = "flops"
M_LR = "lr"
M_TEST_LOSS_FINAL = "test_loss_final"
M_TOKENS_PER_SEC = "tokens_per_sec"
M_MFU = "mfu"
M_TOKENS_TRAINED = "tokens_trained"
M_UNIQUE_TOKENS_SEEN = "unique_tokens_seen"
# Downstream accuracies: benchmark name -> metric.
BENCHMARK_METRICS = {
    "sblimp": "sblimp_acc",
    "swuggy": "swuggy_acc",
    "topic_cloze": "topic_cloze_acc",
    "story_cloze": "story_cloze_acc",
}
DOWNSTREAM_METRICS = tuple(BENCHMARK_METRICS.values())

# ---- artifacts --------------------------------------------------------------------------------
ARTIFACT_TRIAL_CONFIG = "trial_config.json"
ARTIFACT_MODEL_DIR = "model"  # a save_pretrained directory (safetensors)
ARTIFACT_EVAL_DETAILS = "eval/breakdown.json"
ARTIFACT_FIT_DIR = "fit"

DEFAULT_DB = "mlflow.db"


def default_tracking_uri(workdir: str | Path | None = None) -> str:
    """`MLFLOW_TRACKING_URI` if set, else a SQLite file in the working directory.

    MLflow 3 refuses the old `./mlruns` file store, so the local default is SQLite.
    """
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    base = Path(workdir) if workdir is not None else Path.cwd()
    return f"sqlite:///{(base / DEFAULT_DB).resolve()}"


def resolve_tracking_uri(flag: str | None, workdir: str | Path | None = None) -> str:
    return flag or default_tracking_uri(workdir)


def client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def get_or_create_experiment(tracking_uri: str, name: str, artifact_location: str | None = None) -> str:
    """The experiment id for `name`, created once (before trials start: racing creation fails)."""
    c = client(tracking_uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise UserError(f"MLflow experiment {name!r} is deleted in {tracking_uri}; restore it or rename the grid")
        return exp.experiment_id
    try:
        return c.create_experiment(name, artifact_location=artifact_location)
    except Exception:
        exp = c.get_experiment_by_name(name)  # created concurrently by another process
        if exp is None:
            raise
        return exp.experiment_id


def get_experiment_id(tracking_uri: str, name: str) -> str:
    exp = client(tracking_uri).get_experiment_by_name(name)
    if exp is None:
        raise UserError(f"no MLflow experiment named {name!r} in {tracking_uri}")
    return exp.experiment_id


@dataclass(frozen=True)
class TrialRun:
    run_id: str
    status: str  # MLflow run status before we touched it: FINISHED / RUNNING / FAILED / KILLED / NEW
    resumed: bool


def find_trial_runs(tracking_uri: str, experiment_id: str, trial_key: str) -> list:
    c = client(tracking_uri)
    return c.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_TRIAL_KEY}` = '{trial_key}' and tags.`{TAG_KIND}` = '{KIND_TRAIN}'",
        max_results=10,
    )


def open_trial_run(
    tracking_uri: str,
    experiment_id: str,
    trial_key: str,
    run_name: str,
    params: dict,
    tags: dict | None = None,
) -> TrialRun:
    """The one MLflow run of a trial: existing (resumed, status set back to RUNNING) or new.

    A FINISHED run is returned untouched (status FINISHED) so the caller can skip the trial.
    """
    c = client(tracking_uri)
    existing = find_trial_runs(tracking_uri, experiment_id, trial_key)
    if existing:
        run = sorted(existing, key=lambda r: r.info.start_time)[0]
        status = run.info.status
        if status != "FINISHED":
            c.update_run(run.info.run_id, status="RUNNING")
            c.delete_tag(run.info.run_id, TAG_FAILURE) if TAG_FAILURE in run.data.tags else None
        return TrialRun(run.info.run_id, status, resumed=True)
    from mlflow.entities import Param, RunTag

    from slmscale import __version__

    all_tags = {TAG_KIND: KIND_TRAIN, TAG_TRIAL_KEY: trial_key, TAG_VERSION: __version__, **(tags or {})}
    run = c.create_run(experiment_id, run_name=run_name, tags=all_tags)
    c.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()],
                tags=[RunTag(k, str(v)) for k, v in all_tags.items()])
    return TrialRun(run.info.run_id, "NEW", resumed=False)


def log_metrics(tracking_uri: str, run_id: str, metrics: dict[str, float], step: int) -> None:
    """Log several metrics at one step (step = tokens seen for curves)."""
    import time

    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    c = client(tracking_uri)
    c.log_batch(run_id, metrics=[Metric(k, float(v), ts, int(step)) for k, v in metrics.items()])


def finish_run(tracking_uri: str, run_id: str, status: str = "FINISHED", reason: str | None = None) -> None:
    c = client(tracking_uri)
    if reason:
        c.set_tag(run_id, TAG_FAILURE, reason[:5000])
    c.set_terminated(run_id, status=status)


def runs_dataframe(tracking_uri: str, experiment_names: list[str], filter_string: str = "", kind: str = KIND_TRAIN):
    """All runs of the experiments as a DataFrame (mlflow.search_runs columns)."""
    import mlflow

    ids = [get_experiment_id(tracking_uri, n) for n in experiment_names]
    flt = f"tags.`{TAG_KIND}` = '{kind}'"
    if filter_string:
        flt = f"{flt} and ({filter_string})" if " or " in filter_string.lower() else f"{flt} and {filter_string}"
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
