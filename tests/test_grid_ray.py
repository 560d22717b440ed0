"""The grid on a real local Ray (slow: each Train-in-Tune trial has seconds of fixed overhead)."""

from __future__ import annotations

import argparse
import io
import shutil
from pathlib import Path

import pytest

from slmscale.tracking import client
from slmscale.tracking.schema import M_TEST_LOSS_FINAL, PARAM_DEVICE, PARAM_NAMES, TAG_FAILURE
from slmscale.train.synthetic import write_synthetic_units

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_grid_on_ray_nan_trial_fails_others_finish_rerun_skips(
    tmp_path, monkeypatch, inject_faults
):
    import ray

    from slmscale.commands.grid import prepare_jobs
    from slmscale.grid.plan import load_plan
    from slmscale.grid.tune import run_grid

    write_synthetic_units(tmp_path / "units" / "smoke")
    text = (REPO / "tune_spaces" / "smoke.yaml").read_text()
    # Declared GPUs that torch cannot see: with the opt-in, the workers train on the CPU and
    # the runs say so.
    text = text.replace(
        "resources: {workers: 1, cpus_per_worker: 1}",
        "resources: {workers: 1, cpus_per_worker: 0.5, gpus_per_worker: 0.5, max_failures: 0}",
    )
    (tmp_path / "smoke.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    plan = load_plan("smoke.yaml", ["train.allow_cpu_fallback=true"])
    plan.trials = plan.trials[:2]
    args = argparse.Namespace(tracking_uri=uri, storage_path=str(tmp_path / "st"), experiment=None)
    _, _, jobs = prepare_jobs(args, plan)
    inject_faults({jobs[1].key: {"nan_at_step": 5}})
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_grid(jobs, plan.spec.resources, grid_name="smoke", stream=io.StringIO())
    finally:
        ray.shutdown()
    assert summary.failed == 1, summary.table.render()
    c = client(uri)
    runs = {r.data.tags["slmscale.trial_key"]: r for r in c.search_runs([jobs[0].experiment_id])}
    assert len(runs) == 2
    ok, bad = runs[jobs[0].key], runs[jobs[1].key]
    assert ok.info.status == "FINISHED" and set(PARAM_NAMES) <= set(ok.data.params)
    assert ok.data.params[PARAM_DEVICE] == "cpu"
    assert ok.data.metrics[M_TEST_LOSS_FINAL] > 0
    assert bad.info.status == "FAILED" and "non-finite" in bad.data.tags[TAG_FAILURE]

    out = io.StringIO()
    rerun = run_grid(jobs[:1], plan.spec.resources, grid_name="smoke", stream=out)
    assert rerun.skipped == 1 and "skipping 1 already FINISHED" in out.getvalue()
    shutil.rmtree(tmp_path / "st", ignore_errors=True)
