"""WSD on a real local Ray: one trunk, its branches, kills, a driver killed, a grid that grows.

The smoke grid's tiny-a at two budgets (16 and 32 steps; 25% cooldowns: branch steps 12 and 24)
with `schedule: {kind: wsd}` trains one constant-LR trunk to step 24 and two cooldowns.  Whatever
is killed and rerun, each budget ends as one FINISHED run whose final loss equals a WSD run of
that budget trained from scratch in this process (to 1e-6: the branches are exact), and growing
the largest budget later trains only the new steps.  Slow: several Ray Train jobs.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from slmscale.tracking import client
from slmscale.tracking.schema import KIND_TRUNK, M_TRAIN_LOSS, TAG_KIND, TAG_TRIAL_KEY, TAG_TRUNK
from slmscale.train.synthetic import write_synthetic_units

REPO = Path(__file__).resolve().parents[1]
BUDGETS = "tokens: [4096, 8192]"


def _spec(tmp_path: Path, budgets: str = BUDGETS) -> str:
    text = (REPO / "tune_spaces" / "smoke.yaml").read_text()
    text = text.replace("tokens: [4096, 8192]", budgets)
    text = text[: text.index("extra:")] + text[text.index("batch_size:") :]  # no 2-epoch run
    text = text.replace("  - {name: tiny-b, layers: 2, dim: 48, heads: 2}\n", "")
    # The trunk and a waiting branch at once (a Tune trial holds 0.01 CPU too).
    text = text.replace("cpus_per_worker: 1}", "cpus_per_worker: 0.9}")
    text += "schedule: {kind: wsd, cooldown_fraction: 0.25}\n"
    (tmp_path / "wsd.yaml").write_text(text)
    return "wsd.yaml"


def _jobs(tmp_path: Path, monkeypatch, spec: str):
    import argparse

    from slmscale.commands.grid import prepare_jobs
    from slmscale.grid.plan import load_plan

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    plan = load_plan(spec)
    args = argparse.Namespace(tracking_uri=uri, storage_path=str(tmp_path / "st"), experiment=None)
    return plan, prepare_jobs(args, plan)[2], uri


def _runs(uri: str, experiment_id: str, kind: str = "train") -> dict:
    found = client(uri).search_runs([experiment_id], max_results=100)
    return {r.data.tags[TAG_TRIAL_KEY]: r for r in found if r.data.tags.get(TAG_KIND) == kind}


def _steps(uri: str, run) -> list[int]:
    return [m.step for m in client(uri).get_metric_history(run.info.run_id, M_TRAIN_LOSS)]


def _assert_like_scratch(jobs, runs, uri: str) -> None:
    """One FINISHED run per budget, whose final loss is a from-scratch WSD run's, and a curve
    that starts with the trunk's (no step twice)."""
    from slmscale.grid.trunks import branch_step
    from slmscale.train import train_one_trial

    assert set(runs) == {j.key for j in jobs}
    for job in jobs:
        run = runs[job.key]
        assert run.info.status == "FINISHED", run.data.tags
        assert run.data.tags[TAG_TRUNK] == job.trunk
        alone = train_one_trial(job.trial, options=replace(job.options, compile=False))
        assert run.data.metrics["test_loss_final"] == pytest.approx(alone.test_loss_final, abs=1e-6)
        steps = _steps(uri, run)
        assert len(steps) == len(set(steps)) and max(steps) == job.tokens
        assert min(steps) <= branch_step(job.trial) * 256  # the trunk's part of the curve


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_trunk_and_branch_killed_rerun_and_grown(tmp_path, monkeypatch, inject_faults):
    import ray

    from slmscale.grid.tune import run_grid

    write_synthetic_units(tmp_path / "units" / "smoke")
    plan, jobs, uri = _jobs(tmp_path, monkeypatch, _spec(tmp_path))
    assert len(jobs) == 2 and jobs[0].trunk and jobs[0].trunk == jobs[1].trunk
    long = max(jobs, key=lambda j: j.tokens)
    inject_faults(  # the trunk's worker before step 20, the long branch's before step 28
        {
            "*": {"kill_at_step": 20, "kill_marker": str(tmp_path / "trunk-killed")},
            long.key: {"kill_at_step": 28, "kill_marker": str(tmp_path / "branch-killed")},
        }
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_grid(jobs, plan.spec.resources, grid_name="smoke", stream=io.StringIO())
        assert summary.failed == 0, summary.table.render()
        assert (tmp_path / "trunk-killed").exists() and (tmp_path / "branch-killed").exists()
        _assert_like_scratch(jobs, _runs(uri, jobs[0].experiment_id), uri)
        (trunk,) = _runs(uri, jobs[0].experiment_id, KIND_TRUNK).values()
        trunk_steps = _steps(uri, trunk)
        assert trunk.info.status == "FINISHED" and max(trunk_steps) == 24 * 256
        assert len(trunk_steps) == len(set(trunk_steps))  # resumed, not retrained

        # The grid grows: a third budget.  The two finished budgets are not retrained, and the
        # trunk continues from its last branch point (step 24) to the new one (step 36).
        plan, grown, uri = _jobs(
            tmp_path, monkeypatch, _spec(tmp_path, "tokens: [4096, 8192, 12288]")
        )
        assert {j.key for j in jobs} < {j.key for j in grown}
        before = {k: len(_steps(uri, r)) for k, r in _runs(uri, jobs[0].experiment_id).items()}
        again = run_grid(grown, plan.spec.resources, grid_name="smoke", stream=io.StringIO())
        assert again.skipped == 2 and again.failed == 0, again.table.render()
    finally:
        ray.shutdown()
    runs = _runs(uri, jobs[0].experiment_id)
    assert {k: len(_steps(uri, runs[k])) for k in before} == before  # untouched
    _assert_like_scratch(grown, runs, uri)
    (trunk,) = _runs(uri, jobs[0].experiment_id, KIND_TRUNK).values()
    grown_steps = _steps(uri, trunk)
    assert max(grown_steps) == 36 * 256 and len(grown_steps) == len(set(grown_steps))
    assert sorted(grown_steps)[: len(trunk_steps)] == sorted(trunk_steps)  # only new steps added


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_driver_killed_mid_trunk_and_rerun(tmp_path, monkeypatch):
    """`slmscale grid` SIGKILLed once the trunk has saved a branch point; the rerun resumes."""
    write_synthetic_units(tmp_path / "units" / "smoke")
    spec = _spec(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [sys.executable, "-m", "slmscale.cli", "grid", spec, "--tracking-uri", uri]
    args += ["--storage-path", str(tmp_path / "st")]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        import time

        deadline = time.monotonic() + 1200  # a ceiling for a hang, not a speed test
        while not list((tmp_path / "st").glob("trunk-*/branch-*/_COMPLETE")):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no branch point saved in 1200 s"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local Ray, at once
        proc.communicate()
    rerun = subprocess.run(
        args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    plan, jobs, uri = _jobs(tmp_path, monkeypatch, spec)
    _assert_like_scratch(jobs, _runs(uri, jobs[0].experiment_id), uri)
