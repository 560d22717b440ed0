"""The Ray Train worker of a trial: the pure core with Ray's checkpoints, failures told apart.

Checkpoints.  Rank 0 writes `ckpt-<step>` into a private scratch folder in the system temp folder
(`slmscale-<key>-ckpt-<pid>-*`) and reports it; Ray Train uploads it to the trial's storage folder
in the background (`CheckpointUploadMode.ASYNC`, then deletes the local copy) while training goes
on, and keeps the two newest.  On restart the newest is restored, and when it is unusable (torn
upload, bad disk) the previous one: the core names the bad file and falls back, or starts the
trial over and says so (slmscale.train.checkpoint.restore).  Scratch folders are removed when the
worker ends, well or not; those of killed workers (no `finally` runs on SIGKILL) are swept by the
next worker of the same trial on that node and by the driver when the trial ends.

Failures.  Ray Train restarts a lost worker group without limit: a preempted spot node, a node
that failed, a killed worker cost the time since the last checkpoint.  A failure of the code
itself, an exception in training or a non-finite loss, is written to the trial's failure ledger
in its storage folder (`trial-<key>/slmscale-failures/<attempt>.json`, one file per attempt)
before the worker raises, and Ray Train retries it from the checkpoint like any failure; but an
attempt that starts with more than `max_failures` code failures in the ledger closes the run
FAILED with the last reason instead of training.  The driver clears the ledger when it starts the
trial, so `max_failures` counts within one `slmscale grid` run.  A crash that kills the process
without a Python exception (a segfault) looks like a lost worker and is retried.

Packs (`resources.trials_per_job` > 1, slmscale.grid.packs).  One job trains several trials one
after another with the same processes; each trial keeps its own run, ledger and checkpoints
(named `ckpt-<step>-<attempt>-<key[:12]>`, so a restarted group resumes the trial it was
training from that trial's newest checkpoint, and starts the others from their beginning).
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from slmscale.grid.runner import TrialJob, finish, run_worker
from slmscale.train.checkpoint import PREFIX, make_scratch, sweep_scratch

LEDGER = "slmscale-failures"


class RetryAfterCodeFailure(RuntimeError):
    """A non-finite loss, already in the ledger: Ray Train retries from the last checkpoint."""


def _ledger(job: TrialJob):
    """(pyarrow filesystem, path) of the trial's failure ledger folder."""
    import pyarrow.fs as pafs

    base = job.storage_path
    if "://" in base:
        fs, root = pafs.FileSystem.from_uri(base)
    else:
        fs, root = pafs.LocalFileSystem(), str(Path(base).resolve())
    return fs, f"{root.rstrip('/')}/trial-{job.key}/{LEDGER}"


def code_failures(job: TrialJob) -> list[dict]:
    """The code failures recorded for this trial since the driver started it, oldest first."""
    import pyarrow.fs as pafs

    fs, folder = _ledger(job)
    infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    out = []
    for info in infos:
        if info.type == pafs.FileType.File and info.path.endswith(".json"):
            with fs.open_input_stream(info.path) as f:
                try:
                    out.append(json.loads(f.read().decode()))
                except ValueError:
                    continue
    return sorted(out, key=lambda r: r.get("time", 0.0))


def record_code_failure(job: TrialJob, attempt: str, reason: str) -> None:
    fs, folder = _ledger(job)
    fs.create_dir(folder, recursive=True)
    blob = json.dumps({"attempt": attempt, "reason": reason[:1000], "time": time.time()})
    with fs.open_output_stream(f"{folder}/{attempt}.json") as f:
        f.write(blob.encode())


def clear_code_failures(job: TrialJob) -> None:
    """The driver's fresh start of a trial: earlier runs' code failures no longer count."""
    fs, folder = _ledger(job)
    try:
        fs.delete_dir(folder)
    except (FileNotFoundError, OSError):
        pass


def last_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()] or [""]
    return f"{type(exc).__name__}: {lines[-1].strip()[:500]}"


def _agree(ctx, value):
    """Rank 0's `value` on every rank."""
    if ctx.get_world_size() == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _stored_candidates(restored, suffix: str = "") -> Iterator[Path]:
    """Local folders of the trial's checkpoints, newest first: Ray's latest, then the older
    `ckpt-*<suffix>` beside it in storage (each downloaded only if the newer one is unusable).
    `suffix` tells a pack's members apart (`-<key[:12]>`; empty for a job of one trial)."""
    import pyarrow.fs as pafs
    import ray.train

    yield from _as_directory(restored)
    parent, name = restored.path.rstrip("/").rsplit("/", 1)
    infos = restored.filesystem.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
    older = sorted(
        (
            i.path
            for i in infos
            if i.type == pafs.FileType.Directory
            and i.base_name.startswith(PREFIX)
            and i.base_name.endswith(suffix)
            and i.base_name < name
        ),
        reverse=True,
    )
    for path in older:
        yield from _as_directory(ray.train.Checkpoint(path, restored.filesystem))


def _as_directory(checkpoint) -> Iterator[Path]:
    with checkpoint.as_directory() as local:
        yield Path(local)


def train_worker(loop_config: dict) -> None:
    """The Ray Train per-worker function (see the module docstring): one trial, or a pack."""
    import ray.train

    ctx = ray.train.get_context()
    max_failures = int(loop_config.get("max_failures", 0))
    if "jobs" in loop_config:
        _train_pack(loop_config, ctx, max_failures)
        return
    job, run_id = TrialJob.from_dict(loop_config["job"]), loop_config["run_id"]
    _train_trial(job, run_id, ctx, max_failures)


def _train_pack(loop_config: dict, ctx, max_failures: int) -> None:
    """The trials of a pack one after another in this worker group (slmscale.grid.packs).

    Rank 0 opens each trial's run (resumed when it has one) just before training it: a trial
    already FINISHED, by an earlier attempt of this job or another driver, is skipped, so a
    restarted worker group goes on where the lost one stopped.  A trial's code failure ends that
    trial (FAILED after max_failures), never the pack.
    """
    import ray.train

    from slmscale.grid.runner import start_run
    from slmscale.tracking.schema import TAG_TRAIN_JOB, TAG_TRAIN_JOB_STARTED

    jobs = [TrialJob.from_dict(d) for d in loop_config["jobs"]]
    tags = {
        TAG_TRAIN_JOB: loop_config["name"],
        TAG_TRAIN_JOB_STARTED: str(int(1000 * loop_config["started"])),
    }
    for job in jobs:
        opened = None
        if ctx.get_world_rank() == 0:
            try:
                run = start_run(job, tags=tags)
                opened = (run.run_id, run.status, "")
            except Exception as exc:  # the store is unreachable: not a reason to retry the job
                opened = (None, "FAILED", f"could not open its MLflow run: {last_line(exc)}")
        run_id, status, why = _agree(ctx, opened)
        if status == "FINISHED":
            ray.train.report({"trial_key": job.key, "status": "SKIPPED", "tokens_seen": job.tokens})
            continue
        if run_id is None:
            ray.train.report(
                {"trial_key": job.key, "status": "FAILED", "reason": why, "tokens_seen": 0}
            )
            continue
        ray.train.report({"trial_key": job.key, "status": "RUNNING", "tokens_seen": 0})
        _train_trial(job, run_id, ctx, max_failures, suffix=f"-{job.key[:12]}")


def _train_trial(job: TrialJob, run_id: str, ctx, max_failures: int, suffix: str = "") -> None:
    """One trial on this worker: its ledger, its checkpoints (named with `suffix` in a pack)."""
    import ray.train

    rank = ctx.get_world_rank()
    key = {"trial_key": job.key}
    sweep_scratch(job.key)
    decision = None
    if rank == 0:
        failures = code_failures(job)
        give_up = failures[-1]["reason"] if len(failures) > max_failures else None
        decision = (uuid.uuid4().hex, give_up, len(failures))
    attempt, give_up, n_failures = _agree(ctx, decision)
    if give_up is not None:
        if rank == 0:
            reason = f"{give_up} (failed {n_failures} times; resources.max_failures {max_failures})"
            finish(job, run_id, "FAILED", reason)
        ray.train.report({**key, "status": "FAILED", "reason": give_up, "tokens_seen": 0})
        return

    def on_checkpoint(path, tokens_seen: int) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(str(path)) if path else None
        ray.train.report(
            {**key, "tokens_seen": tokens_seen},
            checkpoint=checkpoint,
            checkpoint_dir_name=f"{path.name}-{attempt[:8]}{suffix}" if path else None,
            checkpoint_upload_mode=ray.train.CheckpointUploadMode.ASYNC,
        )

    def on_test_loss(loss: float, tokens_seen: int) -> None:
        ray.train.report({**key, "tokens_seen": tokens_seen, "loss": loss})

    scratch = make_scratch(job.key)
    restored = ray.train.get_checkpoint()
    if restored is not None and not restored.path.rstrip("/").endswith(suffix):
        restored = None  # in a pack: the newest checkpoint is another trial's
    candidates = _stored_candidates(restored, suffix) if restored else None
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
        if candidates is not None:
            candidates.close()  # removes a downloaded copy now, not at garbage collection
        if result.status == "FAILED":  # a non-finite loss: a code failure like an exception
            if rank == 0:
                record_code_failure(job, attempt, result.reason or "FAILED")
            if n_failures + 1 <= max_failures:
                raise RetryAfterCodeFailure(f"{result.reason}; retrying from the last checkpoint")
        if rank == 0:
            finish(job, run_id, result.status, result.reason)
        final = result.test_loss_final if result.test_loss_final is not None else float("nan")
        ray.train.report(
            {
                **key,
                "tokens_seen": result.tokens_trained,
                "loss": final,
                "status": result.status,
                "reason": result.reason or "",
            }
        )
    except RetryAfterCodeFailure:
        raise
    except Exception as exc:
        record_code_failure(job, attempt, last_line(exc))
        raise
    finally:
        # After the final report every upload is done; on an error a pending one may be cut,
        # and the restart falls back to the checkpoint before it.
        shutil.rmtree(scratch, ignore_errors=True)
