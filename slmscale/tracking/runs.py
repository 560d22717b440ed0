"""Trial run identity and lifecycle (edge): trial key -> exactly one MLflow run.

`open_trial_run` finds the trial's run (FINISHED -> the caller skips it; anything else -> resumed
under the same run id) or creates it with status RUNNING and every param before training starts.
Metrics use step = tokens seen, so the MLflow UI plots loss against data.
"""

from __future__ import annotations

from dataclasses import dataclass

from slmscale.tracking.schema import (
    ARTIFACT_EVAL_DETAILS,
    ARTIFACT_MODEL_DIR,
    ARTIFACT_TRIAL_CONFIG,
    DOWNSTREAM_METRICS,
    KIND_TRAIN,
    KIND_TRUNK,
    M_TRUNK_STEPS,
    PARAM_NAMES,
    ROUNDED_METRICS,
    TAG_BRANCH_STEP,
    TAG_FAILURE,
    TAG_KIND,
    TAG_TRIAL_KEY,
    TAG_VERSION,
)
from slmscale.tracking.store import client


@dataclass(frozen=True)
class TrialRun:
    run_id: str
    status: str  # MLflow status before we touched it: FINISHED/RUNNING/FAILED/KILLED, or NEW
    resumed: bool


def find_trial_runs(
    tracking_uri: str, experiment_id: str, trial_key: str, kind: str = KIND_TRAIN
) -> list:
    """The runs of a trial (kind `train`), or of a WSD trunk (kind `trunk`), by key."""
    c = client(tracking_uri)
    return c.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_TRIAL_KEY}` = '{trial_key}' and tags.`{TAG_KIND}` = '{kind}'",
        max_results=10,
    )


def open_trial_run(
    tracking_uri: str,
    experiment_id: str,
    trial_key: str,
    run_name: str,
    params: dict,
    tags: dict | None = None,
    kind: str = KIND_TRAIN,
) -> TrialRun:
    """The one MLflow run of a trial (or trunk): existing (resumed, status set back to RUNNING)
    or new.

    A FINISHED run is returned untouched (status FINISHED) so the caller can skip the trial.
    """
    c = client(tracking_uri)
    existing = find_trial_runs(tracking_uri, experiment_id, trial_key, kind)
    if existing:
        run = min(existing, key=canonical_order)
        status = run.info.status
        if status != "FINISHED":
            c.update_run(run.info.run_id, status="RUNNING")
            if TAG_FAILURE in run.data.tags:  # a retried failure: its old reason no longer holds
                c.delete_tag(run.info.run_id, TAG_FAILURE)
        return TrialRun(run.info.run_id, status, resumed=True)
    from mlflow.entities import Param, RunTag

    from slmscale import __version__

    all_tags = {
        TAG_KIND: kind,
        TAG_TRIAL_KEY: trial_key,
        TAG_VERSION: __version__,
        **(tags or {}),
    }
    run = c.create_run(experiment_id, run_name=run_name, tags=all_tags)
    c.log_batch(
        run.info.run_id,
        params=[Param(k, param_text(v)) for k, v in params.items()],
        tags=[RunTag(k, str(v)) for k, v in all_tags.items()],
    )
    # The caller holds the trial's claim (slmscale.grid.claims), so this run is the only one.
    # A safety net for writers that do not share the claims folder: if another run of the key
    # appeared meanwhile, keep the first by (status, start time, id) and drop ours.
    others = find_trial_runs(tracking_uri, experiment_id, trial_key, kind)
    first = min(others, key=canonical_order) if others else run
    if first.info.run_id != run.info.run_id:
        c.delete_run(run.info.run_id)
        return open_trial_run(tracking_uri, experiment_id, trial_key, run_name, params, tags, kind)
    return TrialRun(run.info.run_id, "NEW", resumed=False)


def canonical_order(run) -> tuple:
    """The run that stands for a trial when a store holds several: a FINISHED one, else the first."""
    return (run.info.status != "FINISHED", run.info.start_time, run.info.run_id)


def trial_status(
    tracking_uri: str, experiment_id: str, trial_key: str, kind: str = KIND_TRAIN
) -> str | None:
    """The MLflow status of the trial's run (FINISHED/FAILED/KILLED/RUNNING), None when it has none."""
    runs = find_trial_runs(tracking_uri, experiment_id, trial_key, kind)
    return min(runs, key=canonical_order).info.status if runs else None


def log_metrics(tracking_uri: str, run_id: str, metrics: dict[str, float], step: int) -> None:
    """Log several metrics at one step (step = tokens seen for curves)."""
    import time

    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    c = client(tracking_uri)
    c.log_batch(run_id, metrics=[Metric(k, float(v), ts, int(step)) for k, v in metrics.items()])


def own_tokens(run) -> float:
    """The tokens a run trained itself: a WSD branch only its cooldown (the trunk's part is the
    trunk's run), a trunk its steps so far."""
    p = run.data.params
    per_step = float(p.get("batch_size", 0) or 0) * float(p.get("context", 0) or 0)
    if run.data.tags.get(TAG_KIND) == KIND_TRUNK:
        return run.data.metrics.get(M_TRUNK_STEPS, 0.0) * per_step
    branch = float(run.data.tags.get(TAG_BRANCH_STEP, 0) or 0)
    return float(p.get("tokens", 0) or 0) - branch * per_step


INTERRUPTED_REASON = "interrupted (Ctrl-C); a rerun resumes it from its last checkpoint"


def finish_run(
    tracking_uri: str, run_id: str, status: str = "FINISHED", reason: str | None = None
) -> None:
    c = client(tracking_uri)
    if reason:
        c.set_tag(run_id, TAG_FAILURE, reason[:5000])
    set_rounded_tags(tracking_uri, run_id)
    c.set_terminated(run_id, status=status)


def param_text(value) -> str:
    """A param as the runs table shows it: `1` epoch, not `1.0` (params are text in MLflow)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def set_rounded_tags(tracking_uri: str, run_id: str) -> None:
    """The run's final metrics rounded, as tags named like them (what the grid's view shows:
    MLflow's runs table prints metric values with every float digit)."""
    from mlflow.entities import RunTag

    c = client(tracking_uri)
    metrics = c.get_run(run_id).data.metrics
    tags = [
        RunTag(m, f"{metrics[m]:.{decimals}f}")
        for m, decimals in ROUNDED_METRICS.items()
        if metrics.get(m) is not None
    ]
    if tags:
        c.log_batch(run_id, tags=tags)


def trial_params(trial, units_dataset: str) -> dict:
    """The DESIGN.md params of a trial (slmscale.trial.Trial), keyed by schema names."""
    values = {
        "model_size": trial.model_size,
        "n_params": trial.n_params,
        "n_params_total": trial.n_params_total,
        "n_layers": trial.shape.n_layers,
        "d_model": trial.shape.dim,
        "n_heads": trial.shape.n_heads,
        "tokens": trial.tokens,
        "unique_tokens": trial.unique_tokens,
        "epochs": trial.epochs,
        "batch_size": trial.batch_size,
        "context": trial.context,
        "steps": trial.steps,
        "warmup_steps": trial.warmup_steps,
        "lr_max": trial.optimizer.lr_max,
        "lr_min": trial.optimizer.lr_min,
        "weight_decay": trial.optimizer.weight_decay,
        "tokenizer": trial.tokenizer,
        "units_dataset": units_dataset,
        "seed": trial.seed,
    }
    assert tuple(values) == PARAM_NAMES
    return values


def last_logged_steps(tracking_uri: str, run_id: str) -> dict[str, int]:
    """The largest step logged so far for every metric of a run (empty for a new run)."""
    c = client(tracking_uri)
    keys = c.get_run(run_id).data.metrics.keys()
    return {k: max(m.step for m in c.get_metric_history(run_id, k)) for k in keys}


def is_score_variant(metric: str) -> bool:
    """`sblimp_acc_sum`, `swuggy_acc_invocab_mean`, ...: the same accuracy under the other
    scoring rule.  Kept in the breakdown artifact (eval/breakdown.json), not as run metrics: one
    accuracy per benchmark (plus sWUGGY's in-vocab score) is what the runs table should show."""
    return metric.startswith(tuple(f"{m}_" for m in DOWNSTREAM_METRICS)) and metric.endswith(
        ("_sum", "_mean")
    )


class TrialLogger:
    """Metrics of one trial's run, buffered and written in batches by one process (rank 0).

    A resumed trial recomputes the steps between its last checkpoint and the crash; points at a
    step already logged for that metric are dropped, so a curve never has a repeated step, and
    since the buffer is flushed before every checkpoint is kept, it never has a gap either.
    """

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        self.tracking_uri, self.run_id = tracking_uri, run_id
        self.last = last_logged_steps(tracking_uri, run_id)
        self.buffer: list = []

    def log(self, metrics: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        for k, v in metrics.items():
            if v is None or step <= self.last.get(k, -1) or is_score_variant(k):
                continue
            self.buffer.append(Metric(k, float(v), ts, int(step)))
            self.last[k] = int(step)

    def flush(self) -> None:
        c = client(self.tracking_uri)
        while self.buffer:
            batch, self.buffer = self.buffer[:1000], self.buffer[1000:]
            c.log_batch(self.run_id, metrics=batch)


def log_trial_config(tracking_uri: str, run_id: str, config: dict) -> None:
    """The resolved trial config as the `trial_config.json` artifact."""
    client(tracking_uri).log_dict(run_id, config, ARTIFACT_TRIAL_CONFIG)


def log_trial_outputs(
    tracking_uri: str, run_id: str, model_dir: str | None, eval_details: dict | None
) -> None:
    """The final model directory as the `model` artifact, and the benchmark breakdown."""
    c = client(tracking_uri)
    if model_dir is not None:
        c.log_artifacts(run_id, str(model_dir), ARTIFACT_MODEL_DIR)
    if eval_details is not None:
        c.log_dict(run_id, eval_details, ARTIFACT_EVAL_DETAILS)
