"""Several grid points in one Ray Train job (`resources.trials_per_job`) on a real local Ray.

One pack of three trials: one trains normally, one raises in the training code (FAILED once
the job's retries are spent; the rest of the pack goes on in a fresh job), one has its worker
SIGKILLed mid-trial (the restarted worker group skips the finished trials, resumes the killed one
from its own checkpoint and ends with the loss of an uninterrupted run).  Slow.
"""

from __future__ import annotations

import pytest
from _smoke_grid import run_with_a_kill_and_a_raise, three_smoke_jobs

from slmscale.tracking import client
from slmscale.tracking.schema import TAG_TRAIN_JOB, TAG_TRAIN_JOB_STARTED


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_one_train_job_trains_a_pack_resumes_the_killed_trial_and_fails_only_the_bad_one(
    tmp_path, monkeypatch, inject_faults
):
    from dataclasses import replace

    from slmscale.grid.units import units_of_work
    from slmscale.train import train_one_trial

    plan, jobs, uri = three_smoke_jobs(
        tmp_path,
        monkeypatch,
        "{workers: 1, cpus_per_worker: 0.5, max_failures: 1, trials_per_job: 3}",
    )
    ja, jb, jc = jobs
    units = units_of_work(jobs, plan.spec.resources)
    assert len(units) == 1 and units[0].packed and len(units[0].jobs) == 3
    # jb (the largest, so trained last): wall-clock checkpoints at every flush, SIGKILLed
    # before step 30 once; jc raises before step 5.
    summary, runs = run_with_a_kill_and_a_raise(tmp_path, plan, jobs, uri, inject_faults)
    assert len(runs) == 3 and summary.failed == 1, summary.table.render()
    # One Train job trained all three, and says when it started.
    assert {r.data.tags[TAG_TRAIN_JOB] for r in runs.values()} == {units[0].name}
    assert len({r.data.tags[TAG_TRAIN_JOB_STARTED] for r in runs.values()}) == 1
    assert [p.name for p in (tmp_path / "st").iterdir() if p.name.startswith("pack-")] == [
        units[0].name
    ]
    assert not list((tmp_path / "st").glob("trial-*/checkpoint_*"))

    # The finished trial was not trained again by the restarted worker group.
    ra = runs[ja.key]
    assert ra.info.status == "FINISHED"
    steps_a = [h.step for h in client(uri).get_metric_history(ra.info.run_id, "train_loss")]
    assert len(steps_a) == len(set(steps_a))
    alone_a = train_one_trial(ja.trial, options=replace(ja.options, compile=False))
    assert ra.data.metrics["test_loss_final"] == pytest.approx(alone_a.test_loss_final, abs=1e-6)
    # The killed trial: resumed from its own checkpoint (after step 10), same final loss.
    assert (tmp_path / "killed-once").exists()
    rb = runs[jb.key]
    assert rb.info.status == "FINISHED"
    alone_b = train_one_trial(jb.trial, options=replace(jb.options, compile=False))
    assert rb.data.metrics["test_loss_final"] == pytest.approx(alone_b.test_loss_final, abs=1e-6)
    steps_b = [h.step for h in client(uri).get_metric_history(rb.info.run_id, "train_loss")]
    assert steps_b.count(10 * 256) == 1 and steps_b.count(30 * 256) == 1
    assert max(steps_b) == 8192
    # The code failure ended its trial only.
    rc = runs[jc.key]
    assert rc.info.status == "FAILED"
    assert "InjectedFault" in rc.data.tags["slmscale.failure_reason"]
