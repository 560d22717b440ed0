"""WSD trunks at the edge: branch checkpoints in the grid's storage, the trunk's curve in MLflow.

A trunk (slmscale.grid.trunks) writes its state at every branch step to
`<storage>/trunk-<key>/branch-<step>/` (a checkpoint folder, then a `_COMPLETE` marker, so a
reader never takes a torn copy; any pyarrow filesystem: a local folder, s3://, gs://).  These
are kept for good, unlike the two rolling checkpoints Ray keeps for resume: they are what a
branch starts from, whenever resources let it start, and where a grown trunk continues from.

A branch's MLflow run starts with the trunk's curve up to its branch point (copied from the
trunk's run), so Figure 1's envelope and the fits read a WSD run like a cosine one.  A trunk
that failed for good leaves `_FAILED` (its reason) so that waiting branches stop waiting; the
driver clears it before the trunk is tried again.
"""

from __future__ import annotations

import time
from pathlib import Path

from slmscale.grid.runner import TrialJob

COMPLETE = "_COMPLETE"
FAILED = "_FAILED"


def _fs(storage_path: str, *parts: str):
    """(pyarrow filesystem, path) of `parts` under the grid's storage (a folder or a URI)."""
    import pyarrow.fs as pafs

    if "://" in storage_path:
        fs, root = pafs.FileSystem.from_uri(storage_path)
    else:
        fs, root = pafs.LocalFileSystem(), str(Path(storage_path).resolve())
    return fs, "/".join([root.rstrip("/"), *parts])


def _folder(trunk: str) -> str:
    return f"trunk-{trunk}"


def _branch(step: int) -> str:
    return f"branch-{step:010d}"


def _exists(fs, path: str) -> bool:
    import pyarrow.fs as pafs

    return fs.get_file_info(path).type != pafs.FileType.NotFound


def save_branch_checkpoint(local: Path, storage_path: str, trunk: str, step: int) -> None:
    """Copy the checkpoint folder `local` to the trunk's branch point `step` (marker last)."""
    import pyarrow.fs as pafs

    fs, path = _fs(storage_path, _folder(trunk), _branch(step))
    fs.create_dir(path, recursive=True)
    pafs.copy_files(
        str(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs
    )
    with fs.open_output_stream(f"{path}/{COMPLETE}") as out:
        out.write(str(time.time()).encode())


def saved_branch_steps(storage_path: str, trunk: str) -> list[int]:
    """The branch points of `trunk` with a complete checkpoint, in order."""
    import pyarrow.fs as pafs

    fs, path = _fs(storage_path, _folder(trunk))
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    steps = []
    for info in infos:
        name = info.base_name
        if info.type == pafs.FileType.Directory and name.startswith("branch-"):
            if _exists(fs, f"{info.path}/{COMPLETE}"):
                steps.append(int(name.removeprefix("branch-")))
    return sorted(steps)


def fetch_branch_checkpoint(storage_path: str, trunk: str, step: int, local: Path) -> Path:
    """The trunk's checkpoint at `step`, copied into the folder `local` (returned)."""
    import pyarrow.fs as pafs

    fs, path = _fs(storage_path, _folder(trunk), _branch(step))
    local.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(
        path, str(local), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem()
    )
    (local / COMPLETE).unlink(missing_ok=True)
    return local


def mark_failed(storage_path: str, trunk: str, reason: str) -> None:
    fs, path = _fs(storage_path, _folder(trunk))
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(f"{path}/{FAILED}") as out:
        out.write(reason.encode())


def failed_reason(storage_path: str, trunk: str) -> str | None:
    fs, path = _fs(storage_path, _folder(trunk), FAILED)
    if not _exists(fs, path):
        return None
    with fs.open_input_stream(path) as f:
        return f.read().decode() or "the trunk failed"


def clear_failed(storage_path: str, trunk: str) -> None:
    fs, path = _fs(storage_path, _folder(trunk), FAILED)
    if _exists(fs, path):
        fs.delete_file(path)


def wait_for_branch_point(job: TrialJob, step: int, poll_s: float = 2.0) -> str | None:
    """Block until the trunk of branch `job` has a checkpoint at `step`; returns None then, or
    the trunk's failure reason when it failed for good first."""
    while True:
        if step in saved_branch_steps(job.storage_path, job.trunk):
            return None
        reason = failed_reason(job.storage_path, job.trunk)
        if reason is not None:
            return reason
        time.sleep(poll_s)


def copy_trunk_curve(job: TrialJob, branch_run_id: str, up_to_tokens: int) -> int:
    """Log the trunk's metric points up to `up_to_tokens` into the branch's run (once: a run
    that already has a train_loss point is left alone).  Returns the points copied."""
    from mlflow.entities import Metric

    from slmscale.tracking.runs import canonical_order, find_trial_runs
    from slmscale.tracking.schema import KIND_TRUNK, M_TRAIN_LOSS, M_TRUNK_STEPS
    from slmscale.tracking.store import client

    c = client(job.tracking_uri)
    if M_TRAIN_LOSS in c.get_run(branch_run_id).data.metrics:
        return 0
    runs = find_trial_runs(job.tracking_uri, job.experiment_id, f"trunk-{job.trunk}", KIND_TRUNK)
    if not runs:
        return 0
    trunk_run = min(runs, key=canonical_order).info.run_id
    points = []
    for name in c.get_run(trunk_run).data.metrics:
        if name == M_TRUNK_STEPS:
            continue
        points += [
            Metric(name, m.value, m.timestamp, m.step)
            for m in c.get_metric_history(trunk_run, name)
            if m.step <= up_to_tokens
        ]
    for i in range(0, len(points), 1000):
        c.log_batch(branch_run_id, metrics=points[i : i + 1000])
    return len(points)
