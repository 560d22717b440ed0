"""The training core without Ray or MLflow: schedules, exact token accounting, resume, NaN."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from slmscale_faults import InjectedFault

from slmscale.config import load_grid_spec
from slmscale.corpus import TokenStream, allocate, load_trial_data
from slmscale.grid.expand import expand_grid, resolve_data
from slmscale.train import RuntimeOptions, lr_at, train_one_trial
from slmscale.train.synthetic import write_synthetic_units

SMOKE = "tune_spaces/smoke.yaml"


@pytest.fixture(scope="module")
def smoke_trials(tmp_path_factory):
    """The smoke grid's trials over a tiny synthetic units dataset at units/smoke."""
    import os
    from pathlib import Path

    root = tmp_path_factory.mktemp("smoke")
    spec_path = Path(__file__).resolve().parents[1] / SMOKE
    write_synthetic_units(root / "units" / "smoke")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        spec = load_grid_spec(spec_path)
        trials = expand_grid(spec, resolve_data(spec))
    finally:
        os.chdir(cwd)
    return [t.with_paths(lambda p: str(root / p)) for t in trials]


def test_lr_schedule_endpoints_exact():
    kw = dict(steps=1000, warmup_steps=100, lr_max=5e-4, lr_min=5e-5)
    assert lr_at(0, **kw) == 5e-4 / 100
    assert lr_at(49, **kw) == 5e-4 * 50 / 100
    assert lr_at(99, **kw) == 5e-4  # warmup reaches lr_max exactly on its last step
    assert lr_at(100, **kw) == 5e-4  # cosine starts at lr_max
    assert lr_at(999, **kw) == 5e-5  # and ends at lr_min exactly on the last step
    mid = lr_at(100 + 899 / 2, **kw)
    assert mid == pytest.approx((5e-4 + 5e-5) / 2)
    lrs = [lr_at(s, **kw) for s in range(100, 1000)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def test_allocate_by_weight_with_overflow():
    assert allocate(100, [1, 1], [1000, 1000]) == [50, 50]
    assert allocate(100, [3, 1], [1000, 1000]) == [75, 25]
    assert allocate(100, [1, 1], [10, 1000]) == [10, 90]  # the small source gives the rest
    assert sum(allocate(101, [1, 1, 1], [50, 50, 50])) == 101


def test_stream_covers_pool_exactly(smoke_trials):
    trial = next(t for t in smoke_trials if t.epochs == 2)
    pool = load_trial_data(trial).stream.pool
    assert len(pool) == trial.unique_tokens
    stream = TokenStream(pool, trial.tokens, trial.context, seed=0)
    idx = np.concatenate([stream.indices(w * 64, (w + 1) * 64) for w in range(stream.n_windows)])
    assert len(idx) == trial.tokens
    first, second = idx[: trial.unique_tokens], idx[trial.unique_tokens :]
    assert sorted(first) == list(range(trial.unique_tokens))  # pass 1: every pool token once
    assert sorted(second) == list(range(trial.unique_tokens))  # pass 2: again...
    assert not np.array_equal(first, second)  # ...in a fresh order
    again = load_trial_data(trial).stream.pool
    assert np.array_equal(pool, again)  # the seed fixes the unique tokens


def test_uneven_budget_stops_at_exactly_d(smoke_trials):
    trial = replace(smoke_trials[0], tokens=1000, unique_tokens=700)
    result = train_one_trial(trial, options=RuntimeOptions(deterministic=True))
    assert result.status == "FINISHED"
    assert result.tokens_trained == 1000  # 3 full steps of 256 and a partial one of 232
    assert result.unique_tokens_seen == 700
    assert result.steps == math.ceil(1000 / (4 * 64))


def test_kill_and_resume_gives_the_same_final_loss(smoke_trials, tmp_path, monkeypatch):
    trial = next(t for t in smoke_trials if t.epochs == 2)
    opts = RuntimeOptions(checkpoint_every_steps=8, log_every_steps=4, deterministic=True)
    full = train_one_trial(trial, options=opts)
    with monkeypatch.context() as m:
        import slmscale_faults

        slmscale_faults.install({"*": {"raise_at_step": 21}}, m.setattr)
        with pytest.raises(InjectedFault):
            train_one_trial(trial, checkpoint_dir=tmp_path / "ckpt", options=opts)
    seen = []
    resumed = train_one_trial(
        trial,
        reporter=lambda m, step: seen.append(step),
        checkpoint_dir=tmp_path / "ckpt",
        options=opts,
    )
    assert min(seen) > 16 * 256  # it restarted after the step-16 checkpoint, not from zero
    assert resumed.tokens_trained == full.tokens_trained == 8192
    assert resumed.test_loss_final == full.test_loss_final
    assert full.test_loss_final < math.log(20)  # and it learned something


def test_nan_loss_fails_the_trial_with_a_reason(smoke_trials, inject_faults):
    inject_faults({smoke_trials[0].key: {"nan_at_step": 3}})
    result = train_one_trial(smoke_trials[0], options=RuntimeOptions(deterministic=True))
    assert result.status == "FAILED"
    assert "non-finite train loss" in result.reason and "step 3" in result.reason
    assert result.steps == 4


def test_wsd_lr_is_exact_at_warmup_end_branch_point_and_last_step():
    from slmscale.train.schedule import branch_step
    from slmscale.trial import Schedule

    for shape in ("1-sqrt", "linear"):
        wsd = Schedule(kind="wsd", cooldown_fraction=0.2, cooldown_shape=shape)
        kw = dict(steps=1000, warmup_steps=100, lr_max=5e-4, lr_min=5e-5, schedule=wsd)
        b = branch_step(1000, wsd)
        assert b == 800
        assert lr_at(99, **kw) == 5e-4  # warmup reaches lr_max exactly on its last step
        assert lr_at(100, **kw) == lr_at(799, **kw) == 5e-4  # the constant trunk
        assert lr_at(b - 1, **kw) == 5e-4  # the last trunk step, just before the branch point
        assert lr_at(b, **kw) < 5e-4  # the first cooldown step
        assert lr_at(999, **kw) == 5e-5  # lr_min exactly on the last step
        cool = [lr_at(s, **kw) for s in range(b, 1000)]
        assert all(x > y for x, y in zip(cool, cool[1:], strict=False))
    # 1-sqrt drops fast, then slowly: below linear all the way down
    sq = Schedule(kind="wsd", cooldown_shape="1-sqrt")
    lin = Schedule(kind="wsd", cooldown_shape="linear")
    kw = dict(steps=1000, warmup_steps=100, lr_max=5e-4, lr_min=5e-5)
    assert all(lr_at(s, **kw, schedule=sq) < lr_at(s, **kw, schedule=lin) for s in range(800, 999))
    trunk = Schedule(kind="constant")
    assert lr_at(999, **kw, schedule=trunk) == 5e-4  # a trunk never cools down


def test_a_branch_equals_a_from_scratch_wsd_run(smoke_trials, tmp_path):
    """Trunk to the branch step, then the cooldown: the curve and final loss of a WSD run of
    that budget trained from scratch, to 1e-6 (both deterministic on the CPU)."""
    from slmscale.grid.trunks import branch_step, plan_trunks
    from slmscale.train import checkpoint as ckpt
    from slmscale.trial import Schedule

    wsd = Schedule(kind="wsd", cooldown_fraction=0.25)
    trials = [
        replace(t, schedule=wsd) for t in smoke_trials if t.model_size == "tiny-a" and t.epochs == 1
    ]
    (trunk,) = plan_trunks(trials)
    assert len(trunk.branches) == 2 and trunk.branch_steps() == [12, 24]  # 16 and 32 steps
    opts = RuntimeOptions(log_every_steps=1, deterministic=True)
    done = train_one_trial(
        trunk.trial,
        checkpoint_dir=tmp_path / "trunk",
        checkpoint_steps=trunk.branch_steps(),
        keep_checkpoints=None,
        options=opts,
    )
    assert done.steps == 24 and done.tokens_trained == 24 * 256
    saved = {ckpt.read_state(p)["progress"]["step"]: p for p in ckpt.candidates(tmp_path / "trunk")}
    for branch in trunk.branches:
        b = branch_step(branch)
        scratch_curve, branched_curve = [], []

        def keep(curve):
            return lambda m, step: (
                curve.append((step, m["train_loss"])) if "train_loss" in m else None
            )

        scratch = train_one_trial(branch, reporter=keep(scratch_curve), options=opts)
        branched = train_one_trial(
            branch, reporter=keep(branched_curve), resume_from=[saved[b]], options=opts
        )
        assert branched.tokens_trained == scratch.tokens_trained == branch.tokens
        assert abs(branched.test_loss_final - scratch.test_loss_final) < 1e-6
        after = [(s, x) for s, x in scratch_curve if s > b * 256]
        assert len(after) == len(branched_curve) and after
        assert max(abs(x - y) for (_, x), (_, y) in zip(after, branched_curve, strict=True)) < 1e-6
