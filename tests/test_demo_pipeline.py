"""`slmscale demo` end to end on the tiny world: every stage for real, checked by its invariants."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmscale.demo.world import PRESETS

# Eq. 4 has 5 parameters: the report refuses < 5 single-epoch runs, so 3 sizes x 2 budgets.
TINY_SPEC = """
name: demo_tiny
units: [{path: units/demo}]
models:
  - {name: t-small, layers: 1, dim: 16, heads: 2, intermediate: 32}
  - {name: t-mid, layers: 1, dim: 32, heads: 2, intermediate: 64}
  - {name: t-large, layers: 2, dim: 64, heads: 4, intermediate: 176}
tokens: [2000, 16000]
epochs: [1]
extra:
  - models: [{name: t-small, layers: 1, dim: 16, heads: 2, intermediate: 32}]
    tokens: [4000]
    epochs: [2]
batch_size: 8
context: 128
optimizer: {lr_max: 3.0e-3, lr_min: 3.0e-4, warmup_min_steps: 2, warmup_fraction: 0.05}
eval: {n_evals: 2}
train: {precision: fp32, checkpoint_every_steps: 1000, deterministic: true}
benchmarks:
  - {name: sblimp, units: units/sblimp, root: world/benchmarks/sblimp}
  - {name: swuggy, units: units/swuggy, root: world/benchmarks/swuggy}
  - {name: topic_cloze, units: units/topic_cloze, root: world/benchmarks/topic_cloze}
  - {name: story_cloze, units: units/story_cloze, root: world/benchmarks/story_cloze}
resources: {workers: 1, cpus_per_worker: 0.9, max_concurrent_trials: 2, max_failures: 0, trials_per_job: 4}
"""


@pytest.mark.slow
def test_tiny_demo_runs_every_stage(tmp_path):
    from slmscale.config import load_grid_spec
    from slmscale.demo.run import closing_lines, run_demo
    from slmscale.demo.stages import DemoLayout, tokenize_jobs
    from slmscale.grid.expand import expand_grid, resolve_data
    from slmscale.tracking import client
    from slmscale.units import read_rejects, read_units

    spec_file = tmp_path / "demo_tiny.yaml"
    spec_file.write_text(TINY_SPEC)
    work = tmp_path / "work"
    result = run_demo(work, world=PRESETS["tiny"], spec_file=spec_file, tokenize_engine="local")
    layout = DemoLayout(work.resolve())

    # every rendered file tokenized, none rejected
    manifest_files = {
        "demo": ("train-clean", "test-clean"),
        **{n: (f"benchmarks/{n}",) for n in ("sblimp", "swuggy", "story_cloze", "topic_cloze")},
    }
    from slmscale.demo.world import load_manifest

    manifest = load_manifest(layout.world)
    for name in tokenize_jobs(layout):
        expected = sum(len(manifest["files"][k]) for k in manifest_files[name])
        assert read_units(layout.units(name)).num_rows == expected, name
        assert read_rejects(layout.units(name)).num_rows == 0, name

    # one MLflow run per trial, all finished
    spec_path = layout.spec("demo_tiny")
    spec = load_grid_spec(spec_path)
    trials = expand_grid(spec, resolve_data(spec, spec_path.parent))
    c = client(result.tracking_uri)
    exp = c.get_experiment_by_name(result.experiment)
    runs = c.search_runs([exp.experiment_id], "tags.`slmscale.kind` = 'train'")
    keys = sorted(r.data.tags["slmscale.trial_key"] for r in runs)
    assert keys == sorted(t.key for t in trials)
    assert all(r.info.status == "FINISHED" for r in runs)

    # loss falls with size and with data (the extremes of the tiny grid)
    loss = {
        (r.data.params["model_size"], int(r.data.params["tokens"])): r.data.metrics[
            "test_loss_final"
        ]
        for r in runs
        if float(r.data.params["epochs"]) == 1
    }
    assert loss[("t-large", 16000)] < loss[("t-small", 16000)]
    assert loss[("t-large", 16000)] < loss[("t-large", 2000)]

    # the report and fit.json written; the last lines name them, the UI and the grid's view
    assert (result.report_dir / "report.md").is_file()
    assert list(Path(result.report_dir).rglob("fit.json"))
    lines = closing_lines(result)
    assert str(result.report_dir / "report.html") in lines[0]
    assert f"mlflow ui --backend-store-uri {result.tracking_uri}" in lines[2]
    assert lines[3].endswith(
        f"/#/experiments/{exp.experiment_id}/runs?viewStateShareKey=slmscale-grid-demo_tiny"
    )

    # a rerun reuses every stage
    again = run_demo(work, world=PRESETS["tiny"], spec_file=spec_file, tokenize_engine="local")
    assert all(again.reused[stage] for stage in ("world", "kmeans", "tokenize", "grid", "report"))
    assert len(c.search_runs([exp.experiment_id], "tags.`slmscale.kind` = 'train'")) == len(trials)
