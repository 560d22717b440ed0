"""Trial run identity and lifecycle (edge): trial key -> exactly one MLflow run.

`open_trial_run` finds the trial's run (FINISHED -> the caller skips it; anything else -> resumed
under the same run id) or creates it with status RUNNING and every param before training starts.
Metrics use step = tokens seen, so the MLflow UI plots loss against data.
"""

from __future__ import annotations

from dataclasses import dataclass

from slmscale.tracking.schema import KIND_TRAIN, TAG_FAILURE, TAG_KIND, TAG_TRIAL_KEY, TAG_VERSION
from slmscale.tracking.store import client


@dataclass(frozen=True)
class TrialRun:
    run_id: str
    status: (
        str  # MLflow run status before we touched it: FINISHED / RUNNING / FAILED / KILLED / NEW
    )
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

    all_tags = {
        TAG_KIND: KIND_TRAIN,
        TAG_TRIAL_KEY: trial_key,
        TAG_VERSION: __version__,
        **(tags or {}),
    }
    run = c.create_run(experiment_id, run_name=run_name, tags=all_tags)
    c.log_batch(
        run.info.run_id,
        params=[Param(k, str(v)) for k, v in params.items()],
        tags=[RunTag(k, str(v)) for k, v in all_tags.items()],
    )
    return TrialRun(run.info.run_id, "NEW", resumed=False)


def log_metrics(tracking_uri: str, run_id: str, metrics: dict[str, float], step: int) -> None:
    """Log several metrics at one step (step = tokens seen for curves)."""
    import time

    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    c = client(tracking_uri)
    c.log_batch(run_id, metrics=[Metric(k, float(v), ts, int(step)) for k, v in metrics.items()])


def finish_run(
    tracking_uri: str, run_id: str, status: str = "FINISHED", reason: str | None = None
) -> None:
    c = client(tracking_uri)
    if reason:
        c.set_tag(run_id, TAG_FAILURE, reason[:5000])
    c.set_terminated(run_id, status=status)
