"""Checkpoints you can trust: weights_only loading, two kept, a corrupt one named and skipped,
the trial started over when none is usable, scratch copies of killed workers removed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import slmscale_faults
import torch
from slmscale_faults import InjectedFault
from test_train_core import smoke_trials  # noqa: F401 - the smoke grid fixture

from slmscale.train import RuntimeOptions, train_one_trial
from slmscale.train import checkpoint as ckpt

OPTS = RuntimeOptions(checkpoint_every_steps=8, log_every_steps=4, deterministic=True)


def _config(trials):
    return next(t for t in trials if t.epochs == 2)  # 32 steps


def _crash_at(config, root: Path, step: int) -> None:
    with pytest.MonkeyPatch.context() as m:
        slmscale_faults.install({"*": {"raise_at_step": step}}, m.setattr)
        with pytest.raises(InjectedFault):
            train_one_trial(config, checkpoint_dir=root, options=OPTS)


def _resume(config, root: Path):
    warnings, seen = [], []
    result = train_one_trial(
        config,
        reporter=lambda m, step: seen.append(step),
        checkpoint_dir=root,
        options=OPTS,
        warn=warnings.append,
    )
    return result, warnings, seen


@pytest.fixture(scope="module")
def full_run(smoke_trials):  # noqa: F811
    return train_one_trial(_config(smoke_trials), options=OPTS)


def test_two_newest_checkpoints_are_kept(smoke_trials, tmp_path):  # noqa: F811
    _crash_at(_config(smoke_trials), tmp_path, 25)
    assert [p.name for p in ckpt.candidates(tmp_path)] == ["ckpt-0000000024", "ckpt-0000000016"]
    for p in ckpt.candidates(tmp_path):
        assert (p / ckpt.MANIFEST_FILE).is_file()


def test_truncated_latest_falls_back_to_previous_and_names_it(
    smoke_trials,  # noqa: F811
    full_run,
    tmp_path,
):
    config = _config(smoke_trials)
    _crash_at(config, tmp_path, 25)
    latest = tmp_path / "ckpt-0000000024" / ckpt.STATE_FILE
    latest.write_bytes(latest.read_bytes()[:1000])  # the upload or the disk cut it short
    result, warnings, seen = _resume(config, tmp_path)
    assert str(latest) in warnings[0] and "truncated" in warnings[0]
    assert "previous checkpoint" in warnings[-1]
    assert 16 * 256 < min(seen) <= 20 * 256  # resumed after step 16, not 24, not 0
    assert result.test_loss_final == full_run.test_loss_final


def test_corrupt_without_manifest_is_named_by_the_loader(smoke_trials, tmp_path):  # noqa: F811
    config = _config(smoke_trials)
    _crash_at(config, tmp_path, 25)
    latest = tmp_path / "ckpt-0000000024"
    (latest / ckpt.MANIFEST_FILE).unlink()  # e.g. a checkpoint copied by hand without it
    data = (latest / ckpt.STATE_FILE).read_bytes()
    (latest / ckpt.STATE_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ckpt.CheckpointError, match=str(latest / ckpt.STATE_FILE)):
        ckpt.read_state(latest)


def test_no_usable_checkpoint_starts_over_and_says_so(
    smoke_trials,  # noqa: F811
    full_run,
    tmp_path,
):
    config = _config(smoke_trials)
    _crash_at(config, tmp_path, 25)
    for p in ckpt.candidates(tmp_path):
        (p / ckpt.STATE_FILE).write_bytes(b"not a checkpoint")
    result, warnings, seen = _resume(config, tmp_path)
    assert len([w for w in warnings if "trying the previous" in w]) == 2
    assert "starting the trial over" in warnings[-1]
    assert min(seen) <= 4 * 256  # from the start
    assert result.tokens_trained == full_run.tokens_trained
    assert result.test_loss_final == full_run.test_loss_final


def test_tampered_checkpoint_cannot_run_code(tmp_path):
    marker = tmp_path / "owned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    root = tmp_path / "ckpt-0000000008"
    root.mkdir()
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    torch.save(
        {"model": model.state_dict(), "optimizer": opt.state_dict(), "progress": {}, "rng": Evil()},
        root / ckpt.STATE_FILE,
    )
    with pytest.raises(ckpt.CheckpointError, match="unreadable"):
        ckpt.read_state(root)
    assert not marker.exists()


def test_rng_state_roundtrips_through_weights_only(tmp_path):
    import random

    import numpy as np

    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    np.random.seed(3)
    random.seed(4)
    np.random.normal()  # leaves a cached gaussian
    path = ckpt.save_into(tmp_path, model, opt, ckpt.Progress(step=5))
    expected = (np.random.random(3).tolist(), random.random(), torch.rand(2).tolist())
    ckpt.load_checkpoint(path, model, opt)
    assert (np.random.random(3).tolist(), random.random(), torch.rand(2).tolist()) == expected


def test_scratch_of_a_killed_worker_is_swept(tmp_path):
    code = (
        "import os, signal, sys\n"
        "from slmscale.train.checkpoint import make_scratch\n"
        f"d = make_scratch('k123', {str(tmp_path)!r})\n"
        "(d / 'state.pt').write_bytes(b'x' * 1000)\n"
        "print(d, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == -signal.SIGKILL
    left = Path(out.stdout.strip())
    assert left.is_dir() and left.name.startswith("slmscale-k123-ckpt-")
    mine = ckpt.make_scratch("k123", tmp_path)  # this process is alive: kept
    other = ckpt.make_scratch("k999", tmp_path)
    assert ckpt.sweep_scratch("k123", tmp_path) == [left]
    assert not left.exists() and mine.exists() and other.exists()


def test_ray_restore_walks_back_through_stored_checkpoints(smoke_trials, tmp_path):  # noqa: F811
    """The Ray worker's candidates: the trial's ckpt-* beside Ray's latest, newest first."""
    import ray.train

    from slmscale.grid.trainworker import _own_checkpoints

    config = _config(smoke_trials)
    local = tmp_path / "local"
    train_one_trial(config, checkpoint_dir=local, options=OPTS, keep_checkpoints=None)
    storage = tmp_path / "storage"
    storage.mkdir()
    for p in ckpt.candidates(local):  # as Ray names them: ckpt-<step>-<attempt>
        p.rename(storage / f"{p.name}-abcd1234")
    names = sorted(p.name for p in storage.iterdir())
    assert names[0].startswith("ckpt-0000000008") and len(names) == 3  # 8, 16, 24
    latest = storage / names[-1]
    (latest / ckpt.STATE_FILE).write_bytes(b"torn upload")
    (storage / "ckpt-0000000030-abcd1234-otherpacked1").mkdir()  # another trial's, newer
    found = list(_own_checkpoints(ray.train.Checkpoint(str(latest)), "-abcd1234"))
    assert [p.name for p in found] == names[::-1]
    warnings = []
    seen = []
    train_one_trial(  # restore through the core, as the worker does
        config,
        reporter=lambda m, s: seen.append(s),
        resume_from=_own_checkpoints(ray.train.Checkpoint(str(latest)), "-abcd1234"),
        options=OPTS,
        warn=warnings.append,
    )
    assert str(latest / ckpt.STATE_FILE) in warnings[0]
    assert 16 * 256 < min(seen) <= 20 * 256
