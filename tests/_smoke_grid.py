"""Three trials of the smoke grid as Ray jobs, with the grid's resources replaced (Ray tests)."""

from __future__ import annotations

import argparse
from pathlib import Path

from slmscale.train.synthetic import write_synthetic_units

REPO = Path(__file__).resolve().parents[1]


def three_smoke_jobs(tmp_path: Path, monkeypatch, resources: str):
    """(plan, [tiny-a 4096, tiny-b 8192, tiny-b 4096] jobs, tracking uri) in `tmp_path`."""
    from slmscale.commands.grid import prepare_jobs
    from slmscale.grid.plan import load_plan

    write_synthetic_units(tmp_path / "units" / "smoke")
    text = (REPO / "tune_spaces" / "smoke.yaml").read_text()
    text = text.replace("resources: {workers: 1, cpus_per_worker: 1}", f"resources: {resources}")
    assert resources in text
    (tmp_path / "smoke.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    plan = load_plan("smoke.yaml")
    a = next(t for t in plan.trials if t.model_size == "tiny-a" and t.tokens == 4096)
    c, b = (t for t in plan.trials if t.model_size == "tiny-b")  # 4096 and 8192 tokens
    plan.trials = [a, b, c]
    args = argparse.Namespace(tracking_uri=uri, storage_path=str(tmp_path / "st"), experiment=None)
    _, _, jobs = prepare_jobs(args, plan)
    return plan, jobs, uri


def run_with_a_kill_and_a_raise(tmp_path: Path, plan, jobs, uri: str, inject_faults):
    """Run the three jobs on a local Ray: the second's worker is SIGKILLed before step 30 once
    (wall-clock checkpoints at every flush), the third raises before step 5.

    Returns (grid summary, {trial key: its MLflow run}).
    """
    import io
    from dataclasses import replace

    import ray

    from slmscale.grid.tune import run_grid
    from slmscale.tracking import client

    ja, jb, jc = jobs
    every_flush = replace(jb.options, checkpoint_every_steps=None, checkpoint_every_minutes=0.0)
    jobs = [ja, replace(jb, options=every_flush), jc]
    inject_faults(
        {
            jb.key: {"kill_at_step": 30, "kill_marker": str(tmp_path / "killed-once")},
            jc.key: {"raise_at_step": 5},
        }
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_grid(jobs, plan.spec.resources, grid_name="smoke", stream=io.StringIO())
    finally:
        ray.shutdown()
    found = client(uri).search_runs([jobs[0].experiment_id])
    return summary, {r.data.tags["slmscale.trial_key"]: r for r in found}
