"""Per-size resources and failures counted by Ray on a real local Ray (slow).

One size trains on 2 gloo workers and another on 1, in one grid; a worker SIGKILLed mid-trial is
retried (max_failures 1) and the trial finishes with the loss of an uninterrupted run; an
exception in the training code ends its trial FAILED once the retries are spent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _smoke_grid import run_with_a_kill_and_a_raise, three_smoke_jobs

from slmscale.tracking import client


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_per_size_workers_lost_worker_retried_code_failure_failed(
    tmp_path, monkeypatch, inject_faults
):
    from dataclasses import replace

    from slmscale.train import train_one_trial

    plan, jobs, uri = three_smoke_jobs(
        tmp_path,
        monkeypatch,
        "{workers: 1, cpus_per_worker: 0.5, max_failures: 1, per_size: {tiny-a: {workers: 2}}}",
    )
    ja, jb, jc = jobs
    assert (ja.resources.workers, jb.resources.workers) == (2, 1)
    # 32 steps; wall-clock checkpoints (an interval of 0 minutes: at every flush, i.e. the
    # evaluations at 8, 16, 24 and the logs at 10, 20, 30); SIGKILLed before step 30, once
    summary, runs = run_with_a_kill_and_a_raise(tmp_path, plan, jobs, uri, inject_faults)
    assert len(runs) == 3 and summary.failed == 1, summary.table.render()
    # 2 workers: the same loss curve as one process, to 1e-6 (global batch and D unchanged)
    ra = runs[ja.key]
    assert ra.info.status == "FINISHED"
    history = client(uri).get_metric_history(ra.info.run_id, "train_loss")
    ref = []
    opts = replace(ja.options, compile=False)
    train_one_trial(
        ja.trial,
        reporter=lambda m, s: ref.append((s, m["train_loss"])) if "train_loss" in m else None,
        options=opts,
    )
    got = sorted((h.step, h.value) for h in history)
    assert [s for s, _ in got] == [s for s, _ in ref]
    assert max(abs(x - y) for (_, x), (_, y) in zip(got, ref, strict=True)) < 1e-6
    # The killed worker: retried (one failure of the one allowed), same final loss.
    assert (tmp_path / "killed-once").exists()
    rb = runs[jb.key]
    assert rb.info.status == "FINISHED"
    alone = train_one_trial(jb.trial, options=replace(jb.options, compile=False))
    assert rb.data.metrics["test_loss_final"] == pytest.approx(alone.test_loss_final, abs=1e-6)
    steps = [h.step for h in client(uri).get_metric_history(rb.info.run_id, "train_loss")]
    assert steps.count(10 * 256) == 1  # resumed from a checkpoint (after step 10), not from 0
    assert steps.count(30 * 256) == 1 and max(steps) == 8192
    # The code failure: retried once, then the run FAILED with the reason.
    rc = runs[jc.key]
    assert rc.info.status == "FAILED"
    assert "InjectedFault" in rc.data.tags["slmscale.failure_reason"]
    leftovers = list(Path(__import__("tempfile").gettempdir()).glob(f"slmscale-{jb.key}-ckpt-*"))
    assert leftovers == []
