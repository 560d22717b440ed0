"""The Ray Train worker: the pure core with Ray's checkpoints, one trial or a pack of them.

Checkpoints.  Rank 0 writes `ckpt-<step>` into a private scratch folder in the system temp folder
(`slmscale-<key>-ckpt-<pid>-*`) and reports it; Ray Train uploads it to the job's storage folder
in the background (`CheckpointUploadMode.ASYNC`, then deletes the local copy) while training goes
on, and keeps the two newest.  A checkpoint's name in storage carries the attempt (so a restarted
worker group never overwrites a torn upload of the one it replaced) and, in a pack, the trial
(`ckpt-<step>-<attempt>-<key[:12]>`).  On restart a trial looks for its own checkpoints beside
Ray's latest, newest first, and when one is unusable (torn upload, bad disk) falls back to the
previous one: the core names the bad file, or starts the trial over and says so
(slmscale.train.checkpoint.restore).  Scratch folders are removed when the worker ends, well or
not; those of killed workers (no `finally` runs on SIGKILL) are swept by the next worker of the
same trial on that node and by the driver when the trial ends.

Failures.  An exception raised while training ends the attempt: Ray Train restarts the worker
group (FailureConfig: node preemptions without limit, anything else up to
`resources.max_failures` times); the restarted group skips FINISHED trials and resumes the
interrupted one from its checkpoint.  A non-finite loss is not retried (from the same checkpoint
and data it would recur): the trial closes FAILED and, in a pack, the next one starts.  A trial
that asked for a GPU on a worker where torch sees none closes FAILED at once with one line.

Packs (`resources.trials_per_job` > 1, slmscale.grid.packs).  One job trains several trials one
after another with the same processes; each trial keeps its own MLflow run and checkpoints.
Rank 0 opens each trial's run (resumed when it has one) just before training it.

WSD (slmscale.grid.trunks, slmscale.grid.trunkrun).  A trunk job trains the constant-LR trunk to
its last branch step, from its own newest checkpoint or the furthest branch point already saved
(a grown grid continues it), and saves its state at every branch step for good.  A branch starts
from its own checkpoints, else from its trunk's state at its branch step, with the trunk's curve
copied into its run first.  A branch whose trunk has no checkpoint there is left unstarted.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from slmscale.grid import trunkrun
from slmscale.grid.runner import TrialJob, finish, run_worker, start_run
from slmscale.grid.trunks import branch_step
from slmscale.train.checkpoint import PREFIX, make_scratch, sweep_scratch
from slmscale.train.device import DeviceUnavailable


@dataclass(frozen=True)
class TrainUnit:
    """What one Ray Train job trains: one trial, or a pack of them one after another."""

    name: str  # the Train run's name (stable: a rerun resumes from its checkpoints)
    jobs: tuple[TrialJob, ...]
    packed: bool
    started: float = 0.0  # when the driver started the job (epoch s), for packs' runs
    run_ids: dict = field(default_factory=dict)  # trial key -> run already opened by the driver

    @property
    def keys(self) -> list[str]:
        return [job.key for job in self.jobs]


def last_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()] or [""]
    return f"{type(exc).__name__}: {lines[-1].strip()[:500]}"


def progress(job: TrialJob, status: str | None = None, **values) -> dict:
    """A result for the grid's table (slmscale.grid.table): the trial, its state, its numbers."""
    out = {"trial_key": job.key, "tokens_seen": values.pop("tokens_seen", 0), **values}
    if status is not None:
        out["status"] = status
    return out


def _agree(ctx, value):
    """Rank 0's `value` on every rank."""
    if ctx.get_world_size() == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _own_paths(restored, suffix: str) -> list[str]:
    """This trial's checkpoints in the job's storage folder, newest first (names sort by step).
    `suffix` tells a pack's trials apart (empty: one trial)."""
    import pyarrow.fs as pafs

    if restored is None:
        return []
    parent = restored.path.rstrip("/").rsplit("/", 1)[0]
    infos = restored.filesystem.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
    return sorted(
        (
            i.path
            for i in infos
            if i.type == pafs.FileType.Directory
            and i.base_name.startswith(PREFIX)
            and i.base_name.endswith(suffix)
        ),
        reverse=True,
    )


def _step_of(path: str) -> int:
    """`.../ckpt-0000000123-<attempt>...` -> 123."""
    return int(path.rstrip("/").rsplit("/", 1)[-1][len(PREFIX) :].split("-", 1)[0])


def _own_checkpoints(restored, suffix: str) -> Iterator[Path]:
    """This trial's checkpoints, newest first, each downloaded only when the newer one is
    unusable."""
    import ray.train

    for path in _own_paths(restored, suffix):
        with ray.train.Checkpoint(path, restored.filesystem).as_directory() as local:
            yield Path(local)


def _candidates(job: TrialJob, restored, suffix: str, scratch: Path) -> Iterator[Path]:
    """Where the trial resumes from, newest first: its own checkpoints; for a WSD branch or a
    trunk, also the trunk's branch point it needs (a branch: its own; a trunk: the furthest
    saved), placed by step among its own."""
    own = _own_paths(restored, suffix)
    point = None
    if job.is_trunk:
        saved = [s for s in trunkrun.saved_branch_steps(job.storage_path, job.trunk)]
        point = max((s for s in saved if s <= job.trial.steps), default=None)
    elif job.trunk:
        point = branch_step(job.trial)
    newer_own = [p for p in own if point is None or _step_of(p) >= point]
    if newer_own:
        yield from _own_checkpoints(restored, suffix)
    if point is not None and point in trunkrun.saved_branch_steps(job.storage_path, job.trunk):
        yield trunkrun.fetch_branch_checkpoint(job.storage_path, job.trunk, point, scratch)


def train_worker(config: dict) -> None:
    """The Ray Train per-worker function: the unit's trials one after another."""
    import ray.train

    from slmscale.tracking.schema import TAG_TRAIN_JOB, TAG_TRAIN_JOB_STARTED

    unit: TrainUnit = config["unit"]
    ctx = ray.train.get_context()
    tags = {}
    if unit.packed:
        tags = {TAG_TRAIN_JOB: unit.name, TAG_TRAIN_JOB_STARTED: str(int(1000 * unit.started))}
    for job in unit.jobs:
        opened = None
        if ctx.get_world_rank() == 0:
            opened = _open(job, unit.run_ids.get(job.key), tags)
        run_id, status, why = _agree(ctx, opened)
        if status == "FINISHED":
            ray.train.report(progress(job, "SKIPPED", tokens_seen=job.tokens))
        elif status == "KILLED":
            ray.train.report(progress(job, "KILLED", reason=why))
        elif run_id is None:
            ray.train.report(progress(job, "FAILED", reason=why))
        else:
            ray.train.report(progress(job, "RUNNING"))
            _train_trial(job, run_id, ctx, suffix=f"-{job.key[:12]}" if unit.packed else "")


def _open(job: TrialJob, run_id: str | None, tags: dict) -> tuple:
    """(run id, status, reason) of the trial's run, opened here unless the driver did.

    A WSD branch whose trunk has no checkpoint at its branch step is not started (KILLED, no
    run: a rerun trains it).  A FINISHED trunk whose grid grew is opened again."""
    if job.trunk and not job.is_trunk and run_id is None:
        step = branch_step(job.trial)
        if step not in trunkrun.saved_branch_steps(job.storage_path, job.trunk):
            why = trunkrun.failed_reason(job.storage_path, job.trunk) or "not trained yet"
            return None, "KILLED", f"not started: its trunk has no state at step {step} ({why})"
    if run_id is not None:
        return run_id, "RUNNING", ""
    try:
        run = start_run(job, tags=tags)
    except Exception as exc:  # the store is unreachable: not a reason to retry the job
        return None, "FAILED", f"could not open its MLflow run: {last_line(exc)}"
    if job.is_trunk and run.status == "FINISHED":
        if max(job.branch_steps) > max(
            trunkrun.saved_branch_steps(job.storage_path, job.trunk), default=0
        ):
            from slmscale.tracking.store import client

            client(job.tracking_uri).update_run(run.run_id, status="RUNNING")
            return run.run_id, "RUNNING", ""
    elif job.trunk and not run.resumed:
        trunkrun.copy_trunk_curve(job, run.run_id, branch_step(job.trial) * _per_step(job))
    return run.run_id, run.status, ""


def _per_step(job: TrialJob) -> int:
    return job.trial.batch_size * job.trial.context


def _train_trial(job: TrialJob, run_id: str, ctx, suffix: str) -> None:
    """One trial on this worker: its checkpoints (named with `suffix` in a pack), its run closed
    by rank 0 when it ends here (FINISHED, or FAILED on a non-finite loss or a missing GPU)."""
    import ray.train

    rank = ctx.get_world_rank()
    sweep_scratch(job.key)
    attempt = _agree(ctx, uuid.uuid4().hex[:8] if rank == 0 else None)

    def on_checkpoint(path, tokens_seen: int) -> None:
        step = tokens_seen // _per_step(job)
        if job.is_trunk and step in job.branch_steps:  # kept for good, not in Ray's rotation
            if path is not None:
                trunkrun.save_branch_checkpoint(path, job.storage_path, job.trunk, step)
                shutil.rmtree(path, ignore_errors=True)
            ray.train.report(progress(job, tokens_seen=tokens_seen))
            return
        checkpoint = ray.train.Checkpoint.from_directory(str(path)) if path else None
        ray.train.report(
            progress(job, tokens_seen=tokens_seen),
            checkpoint=checkpoint,
            checkpoint_dir_name=f"{path.name}-{attempt}{suffix}" if path else None,
            checkpoint_upload_mode=ray.train.CheckpointUploadMode.ASYNC,
        )

    def on_test_loss(loss: float, tokens_seen: int) -> None:
        ray.train.report(progress(job, tokens_seen=tokens_seen, loss=loss))

    scratch = make_scratch(job.key)
    restored = ray.train.get_checkpoint()
    candidates = _candidates(job, restored, suffix, scratch / "from-trunk")
    try:
        result = run_worker(
            job,
            run_id,
            rank=rank,
            world_size=ctx.get_world_size(),
            checkpoint_dir=scratch / "checkpoint",
            resume_from=candidates,
            on_checkpoint=on_checkpoint,
            on_test_loss=on_test_loss,
        )
    except DeviceUnavailable as exc:  # the same on every retry: say it once and stop
        if rank == 0:
            finish(job, run_id, "FAILED", str(exc))
        ray.train.report(progress(job, "FAILED", reason=str(exc)))
        return
    finally:
        candidates.close()  # removes a downloaded copy now, not at garbage collection
        # After the final report every upload is done; on an error a pending one may be cut,
        # and the restart falls back to the checkpoint before it.
        shutil.rmtree(scratch, ignore_errors=True)
    if rank == 0:
        if job.is_trunk:
            _trunk_done(job, run_id, result)
        finish(job, run_id, result.status, result.reason)
    final = result.test_loss_final if result.test_loss_final is not None else float("nan")
    ray.train.report(
        progress(
            job,
            result.status,
            tokens_seen=result.tokens_trained,
            loss=final,
            reason=result.reason or "",
        )
    )


def _trunk_done(job: TrialJob, run_id: str, result) -> None:
    """A trunk's run says how far it got; a trunk that failed tells its waiting branches."""
    from slmscale.tracking.runs import log_metrics
    from slmscale.tracking.schema import M_TRUNK_STEPS

    log_metrics(job.tracking_uri, run_id, {M_TRUNK_STEPS: result.steps}, result.tokens_trained)
    if result.status != "FINISHED":
        trunkrun.mark_failed(job.storage_path, job.trunk, result.reason or result.status)
