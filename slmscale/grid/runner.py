"""One trial, tracked: MLflow run identity around the pure training core (edge, no Ray here).

Both `slmscale train` (in process) and the Ray Train worker (slmscale.grid.trainworker) go
through `start_run` -> `run_worker` -> `finish`.  A `TrialJob` is what travels to a Ray worker:
the typed trial, how to train it (runtime options, resources) and where to track and store it.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from slmscale.config.grid import TrialResources
from slmscale.tracking.schema import M_TEST_LOSS as TEST_LOSS
from slmscale.train.options import RuntimeOptions
from slmscale.trial import Trial

if TYPE_CHECKING:
    from slmscale.train import TrialResult


@dataclass(frozen=True)
class TrialJob:
    trial: Trial
    run_name: str
    grid: str
    units_label: str  # the units_dataset param: path@digest of each source
    tracking_uri: str
    experiment_id: str
    storage_path: str
    options: RuntimeOptions = RuntimeOptions()
    resources: TrialResources = TrialResources()
    parent_run_id: str = ""  # the grid's parent run (tracking.grid_run); trials nest under it
    # WSD (slmscale.grid.trunks): a branch names the trunk it leaves; a trunk job names itself
    # and the steps its branches leave it at (its `trial` is the constant-LR trunk).
    trunk: str | None = None
    branch_steps: tuple[int, ...] = ()

    @property
    def is_trunk(self) -> bool:
        return bool(self.branch_steps)

    @property
    def key(self) -> str:
        """The trial's key; a trunk's is `trunk-<its key>` (no grid point has that form)."""
        return f"trunk-{self.trunk}" if self.is_trunk else self.trial.key

    @property
    def kind(self) -> str:
        from slmscale.tracking.schema import KIND_TRAIN, KIND_TRUNK

        return KIND_TRUNK if self.is_trunk else KIND_TRAIN

    @property
    def tokens(self) -> int:
        return self.trial.tokens


def start_run(job: TrialJob, tags: dict | None = None):
    """Open (create or resume) the trial's one MLflow run; log the trial config when new.

    `tags` are set on a new run only (e.g. the Train job of a pack, slmscale.grid.packs)."""
    from slmscale.tracking.grid_run import log_units_inputs, trial_tags
    from slmscale.tracking.runs import log_trial_config, open_trial_run, trial_params
    from slmscale.tracking.schema import (
        TAG_BRANCH_STEP,
        TAG_GRID,
        TAG_PARENT_RUN,
        TAG_SCHEDULE,
        TAG_TRUNK,
    )

    trial = job.trial
    tags = {
        TAG_GRID: job.grid,
        TAG_SCHEDULE: describe_schedule(trial),
        **({TAG_TRUNK: job.trunk} if job.trunk else {}),
        **({TAG_BRANCH_STEP: str(_branch_step(trial))} if job.trunk and not job.is_trunk else {}),
        **trial_tags(job.parent_run_id),
        **(tags or {}),
    }
    params = trial_params(trial, job.units_label)
    if job.is_trunk:  # it grows with the grid: its length is a metric, not a param
        params = {k: v for k, v in params.items() if k not in TRUNK_LENGTH_PARAMS}
    run = open_trial_run(
        job.tracking_uri, job.experiment_id, job.key, job.run_name, params, tags, job.kind
    )
    if not run.resumed:
        log_trial_config(job.tracking_uri, run.run_id, trial.to_dict())
        sources = [{"path": src.path, "digest": src.digest} for src in trial.data]
        log_units_inputs(job.tracking_uri, run.run_id, sources)
    elif job.parent_run_id and run.status != "FINISHED":  # a run made before parents existed
        from slmscale.tracking.store import client

        client(job.tracking_uri).set_tag(run.run_id, TAG_PARENT_RUN, job.parent_run_id)
    return run


TRUNK_LENGTH_PARAMS = ("tokens", "unique_tokens", "epochs", "steps")


def _branch_step(trial: Trial) -> int:
    from slmscale.grid.trunks import branch_step

    return branch_step(trial)


def describe_schedule(trial: Trial) -> str:
    """`cosine`, `wsd (1-sqrt, 20%)` or `constant (WSD trunk)`: the run's schedule tag."""
    s = trial.schedule
    if s.kind == "wsd":
        return f"wsd ({s.cooldown_shape}, {s.cooldown_fraction:.0%})"
    return "constant (WSD trunk)" if s.kind == "constant" else s.kind


def record_device(job: TrialJob, run_id: str, device: str) -> None:
    """The `device` param of the run (what it trains on); a resumed trial that moved to another
    device keeps its first one as the param and lists every one in a tag."""
    from slmscale.tracking.schema import PARAM_DEVICE, TAG_DEVICES
    from slmscale.tracking.store import client

    c = client(job.tracking_uri)
    data = c.get_run(run_id).data
    first = data.params.get(PARAM_DEVICE)
    if first is None:
        c.log_param(run_id, PARAM_DEVICE, device)
    elif first != device:
        seen = data.tags.get(TAG_DEVICES, first).split("; ")
        if device not in seen:
            c.set_tag(run_id, TAG_DEVICES, "; ".join([*seen, device]))


def run_worker(
    job: TrialJob,
    run_id: str,
    *,
    rank: int = 0,
    world_size: int = 1,
    checkpoint_dir: str | Path | None = None,
    resume_from=None,
    on_checkpoint=None,
    on_test_loss=None,
) -> TrialResult:
    """Train on this worker; rank 0 writes the metrics and the final outputs to the run."""
    from slmscale.tracking.runs import TrialLogger, log_trial_outputs
    from slmscale.train import train_one_trial
    from slmscale.train.device import describe_device, resolve_device

    device = resolve_device(job.options.device)  # a GPU trial without CUDA stops here
    logger = TrialLogger(job.tracking_uri, run_id) if rank == 0 else None
    if rank == 0:
        record_device(job, run_id, describe_device(device, world_size))

    def reporter(metrics: dict, step: int) -> None:
        if logger is not None:
            logger.log(metrics, step)
            if TEST_LOSS in metrics:
                logger.flush()
        if TEST_LOSS in metrics and on_test_loss is not None:
            on_test_loss(metrics[TEST_LOSS], step)

    def checkpointed(path, tokens_seen: int) -> None:
        if logger is not None:
            logger.flush()  # every point before a kept checkpoint is in the store: no gaps
        if on_checkpoint is not None:
            on_checkpoint(path, tokens_seen)

    outputs = Path(tempfile.mkdtemp(prefix=f"slmscale-{job.key}-")) if rank == 0 else None
    try:
        result = train_one_trial(
            job.trial,
            reporter=reporter,
            checkpoint_dir=checkpoint_dir,
            resume_from=resume_from,
            output_dir=outputs,
            options=job.options,
            on_checkpoint=checkpointed,
            rank=rank,
            world_size=world_size,
            checkpoint_steps=job.branch_steps,
        )
        if logger is not None:
            logger.flush()
            if result.status == "FINISHED":
                log_trial_outputs(job.tracking_uri, run_id, result.model_dir, result.eval_details)
        return result
    finally:
        if logger is not None:
            logger.flush()
        if outputs is not None:
            shutil.rmtree(outputs, ignore_errors=True)


def finish(job: TrialJob, run_id: str, status: str, reason: str | None = None) -> None:
    from slmscale.tracking.runs import finish_run

    finish_run(job.tracking_uri, run_id, status=status, reason=reason)


def local_checkpoint_dir(job: TrialJob) -> Path:
    """Where `slmscale train` keeps the trial's checkpoint (stable: a rerun resumes from it).

    `slmscale train` runs without Ray, so without Ray's storage layer: local folders only.
    """
    if "://" in job.storage_path:
        from slmscale.errors import UserError

        raise UserError(
            f"--storage-path {job.storage_path}: `slmscale train` keeps its checkpoint on a local "
            "or mounted folder; object stores (s3://, gs://) need `slmscale grid`"
        )
    return Path(job.storage_path) / f"trial-{job.key}" / "checkpoint"


def run_in_process(job: TrialJob, on_wait=None) -> tuple[str, TrialResult | None]:
    """Run one trial here, without Ray; returns (status, result).  FINISHED runs are skipped.

    The trial is claimed first (slmscale.grid.claims): while another process trains it, this
    waits (`on_wait(holder)` says so once), then skips it if that one finished it.  Ctrl-C
    closes the run KILLED, to be resumed by a rerun; any other exception closes it FAILED.
    """
    from slmscale.grid.claims import Claims, claims_dir
    from slmscale.tracking.runs import INTERRUPTED_REASON

    directory = local_checkpoint_dir(job)
    with Claims(claims_dir(job.tracking_uri, job.storage_path, job.experiment_id)) as claims:
        claims.claim(job.key, on_wait=on_wait)
        run = start_run(job)
        if run.status == "FINISHED":
            return "SKIPPED", None
        try:
            result = run_worker(job, run.run_id, checkpoint_dir=directory)
        except KeyboardInterrupt:
            finish(job, run.run_id, "KILLED", INTERRUPTED_REASON)
            raise
        except BaseException as exc:
            finish(job, run.run_id, "FAILED", f"{type(exc).__name__}: {exc}")
            raise
        finish(job, run.run_id, result.status, result.reason)
    if result.status == "FINISHED":
        shutil.rmtree(directory, ignore_errors=True)
    return result.status, result
