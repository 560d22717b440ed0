"""Several grid points in one Ray Train job (`resources.trials_per_job`) on a real local Ray.

One pack of three trials: one trains normally, one has its worker SIGKILLed mid-trial (the
restarted worker group skips the finished trial, resumes the killed one from its own checkpoint
and ends with the loss of an uninterrupted run), one raises in the training code (FAILED after
max_failures, without ending the pack).  Slow: one Ray Train job, restarted once.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from slmscale.tracking import client
from slmscale.tracking.schema import TAG_TRAIN_JOB, TAG_TRAIN_JOB_STARTED
from slmscale.train.synthetic import write_synthetic_units

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_one_train_job_trains_a_pack_resumes_the_killed_trial_and_fails_only_the_bad_one(
    tmp_path, monkeypatch
):
    import ray

    from slmscale.commands.grid import prepare_jobs
    from slmscale.grid.plan import load_plan
    from slmscale.grid.tune import run_grid, units_of_work
    from slmscale.train import RuntimeOptions, train_one_trial

    write_synthetic_units(tmp_path / "units" / "smoke")
    text = (REPO / "tune_spaces" / "smoke.yaml").read_text()
    text = text.replace(
        "resources: {workers: 1, cpus_per_worker: 1}",
        "resources: {workers: 1, cpus_per_worker: 0.5, max_failures: 0, trials_per_job: 3}",
    )
    assert "trials_per_job: 3" in text
    (tmp_path / "smoke.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    plan = load_plan("smoke.yaml")
    a = next(t for t in plan.trials if t.model_size == "tiny-a" and t.tokens == 4096)
    c, b = (t for t in plan.trials if t.model_size == "tiny-b")  # 4096 and 8192 tokens
    plan.trials = [a, b, c]
    args = argparse.Namespace(tracking_uri=uri, storage_path=str(tmp_path / "st"), experiment=None)
    _, _, jobs = prepare_jobs(args, plan)
    ja, jb, jc = jobs
    units = units_of_work(jobs, plan.spec.resources)
    assert len(units) == 1 and units[0]["packed"] and len(units[0]["jobs"]) == 3
    # jb (the largest, so trained last): wall-clock checkpoints at every flush, SIGKILLed
    # before step 30 once; jc raises before step 5.
    jb.options = {**jb.options, "checkpoint_every_steps": None, "checkpoint_every_minutes": 0.0}
    jb.faults = {"kill_at_step": 30, "kill_marker": str(tmp_path / "killed-once")}
    jc.faults = {"raise_at_step": 5}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_grid(jobs, plan.spec.resources, grid_name="smoke", stream=io.StringIO())
    finally:
        ray.shutdown()
    runs = {
        r.data.tags["slmscale.trial_key"]: r for r in client(uri).search_runs([ja.experiment_id])
    }
    assert len(runs) == 3 and summary.failed == 1, summary.table.render()
    # One Train job trained all three, and says when it started.
    assert {r.data.tags[TAG_TRAIN_JOB] for r in runs.values()} == {units[0]["name"]}
    assert len({r.data.tags[TAG_TRAIN_JOB_STARTED] for r in runs.values()}) == 1
    assert [p.name for p in (tmp_path / "st").iterdir() if p.name.startswith("pack-")] == [
        units[0]["name"]
    ]
    assert not list((tmp_path / "st").glob("trial-*/checkpoint_*"))
    opts = {"compile": False}
    # The finished trial was not trained again by the restarted worker group.
    ra = runs[ja.key]
    assert ra.info.status == "FINISHED"
    steps_a = [h.step for h in client(uri).get_metric_history(ra.info.run_id, "train_loss")]
    assert len(steps_a) == len(set(steps_a))
    alone_a = train_one_trial(ja.config, options=RuntimeOptions(**{**ja.options, **opts}))
    assert ra.data.metrics["test_loss_final"] == pytest.approx(alone_a.test_loss_final, abs=1e-6)
    # The killed trial: resumed from its own checkpoint (after step 10), same final loss.
    assert (tmp_path / "killed-once").exists()
    rb = runs[jb.key]
    assert rb.info.status == "FINISHED"
    alone_b = train_one_trial(jb.config, options=RuntimeOptions(**{**jb.options, **opts}))
    assert rb.data.metrics["test_loss_final"] == pytest.approx(alone_b.test_loss_final, abs=1e-6)
    steps_b = [h.step for h in client(uri).get_metric_history(rb.info.run_id, "train_loss")]
    assert steps_b.count(10 * 256) == 1 and steps_b.count(30 * 256) == 1
    assert max(steps_b) == 8192
    # The code failure ended its trial only.
    rc = runs[jc.key]
    assert rc.info.status == "FAILED"
    assert "InjectedFault" in rc.data.tags["slmscale.failure_reason"]
