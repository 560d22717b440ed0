"""The same study made in two folders is the same study: same units, same trial keys, same losses.

Issue 27: two quick demos in two folders made the same units, yet none of their trial keys
matched, because a units dataset was identified by its `_meta.json` (which names the inputs' and
the k-means file's paths).  Here the demo's own stages (world, k-means, tokenize) run twice, in
two folders, on the tiny world, and the grid is expanded from the demo's resolved spec (absolute
paths, as `slmscale demo` writes it).  Every trial key must match, and a trial trained in each
folder must end with the same test loss and benchmark scores to the last bit.

Why not `slmscale demo --quick` twice: it takes minutes per run on 2 shared cores (world 37 s,
tokenize 48 s, 7 trials through Ray at load 13: 4:35 measured); the stages and the expansion are
what decide keys, and one trained trial per folder checks the losses.  The quick demo itself is
covered by tests/test_demo_pipeline.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slmscale import units as units_io
from slmscale.demo.stages import (
    DemoLayout,
    _environment,
    stage_kmeans,
    stage_tokenize,
    stage_world,
    tokenize_jobs,
    write_resolved_spec,
)
from slmscale.demo.world import PRESETS

SPEC = """
name: repro
units: [{path: units/demo}]
models:
  - {name: r-small, layers: 1, dim: 16, heads: 2, intermediate: 32}
  - {name: r-mid, layers: 1, dim: 32, heads: 2, intermediate: 64}
tokens: [2000, 4000]
epochs: [1]
batch_size: 4
context: 64
optimizer: {lr_max: 3.0e-3, lr_min: 3.0e-4, warmup_min_steps: 2, warmup_fraction: 0.05}
eval: {n_evals: 2}
train: {precision: fp32, deterministic: true}
benchmarks:
  - {name: sblimp, units: units/sblimp, root: world/benchmarks/sblimp}
  - {name: swuggy, units: units/swuggy, root: world/benchmarks/swuggy}
  - {name: topic_cloze, units: units/topic_cloze, root: world/benchmarks/topic_cloze}
  - {name: story_cloze, units: units/story_cloze, root: world/benchmarks/story_cloze}
"""


def _make(folder: Path, spec_file: Path) -> dict:
    """The demo's stages in `folder`; the units digests and the grid's trials."""
    from slmscale.config import load_grid_spec
    from slmscale.grid.expand import expand_grid, resolve_data

    layout = DemoLayout(folder.resolve())
    layout.workdir.mkdir(parents=True)
    with _environment(layout):
        stage_world(layout, PRESETS["tiny"])
        stage_kmeans(layout, seed=0)
        stage_tokenize(layout, engine="local")
        resolved, _ = write_resolved_spec(layout, spec_file)
    spec = load_grid_spec(resolved)
    trials = expand_grid(spec, resolve_data(spec, resolved.parent))
    digests = {name: units_io.dataset_digest(layout.units(name)) for name in tokenize_jobs(layout)}
    return {"layout": layout, "trials": trials, "digests": digests}


@pytest.fixture(scope="module")
def two_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("repro")
    spec_file = root / "repro.yaml"
    spec_file.write_text(SPEC)
    return _make(root / "laptop", spec_file), _make(root / "cluster" / "mnt" / "study", spec_file)


@pytest.mark.slow
def test_units_are_the_same_content_in_both_folders(two_folders):
    a, b = two_folders
    assert a["digests"] == b["digests"] and len(a["digests"]) == 5  # demo + 4 benchmarks
    meta_a = units_io.load_meta(a["layout"].units("demo"))
    meta_b = units_io.load_meta(b["layout"].units("demo"))
    assert meta_a["kmeans_path"] != meta_b["kmeans_path"]  # the files sat elsewhere
    assert meta_a["kmeans_sha256"] == meta_b["kmeans_sha256"]


@pytest.mark.slow
def test_every_trial_key_matches(two_folders):
    a, b = two_folders
    assert all(bm.digest for t in a["trials"] for bm in t.benchmarks)  # named by content
    keys_a = [(t.model_size, t.tokens, t.key) for t in a["trials"]]
    keys_b = [(t.model_size, t.tokens, t.key) for t in b["trials"]]
    assert len(keys_a) == 4 and keys_a == keys_b


@pytest.mark.slow
def test_a_trial_ends_with_the_same_loss_and_scores_in_both_folders(two_folders):
    from slmscale.train import RuntimeOptions, train_one_trial

    results = []
    for made in two_folders:
        trial = min(made["trials"], key=lambda t: (t.n_params, t.tokens))
        options = RuntimeOptions(device="cpu", deterministic=True)
        results.append(train_one_trial(trial, options=options, warn=lambda _line: None))
    a, b = results
    assert a.status == b.status == "FINISHED"
    assert a.test_loss_final == b.test_loss_final and a.train_loss == b.train_loss
    assert a.downstream == b.downstream and set(a.downstream) >= {"sblimp_acc", "swuggy_acc"}


@pytest.mark.slow
def test_the_reference_check_reproduces_and_names_what_moved(two_folders):
    """slmscale.demo.reference on the tiny world: the same data and code reproduce the recorded
    trials; a moved loss or other k-means centroids are each named."""
    from slmscale.demo import reference

    a, _ = two_folders
    points = (("r-small", 2000), ("r-mid", 4000))
    spec_file = a["layout"].workdir.parent / "repro.yaml"
    recorded = reference.measure(a["layout"].workdir, spec_file, PRESETS["tiny"], points)
    again = reference.measure(a["layout"].workdir, spec_file, PRESETS["tiny"], points)
    assert [p["loss"] for p in recorded["points"]] == [p["loss"] for p in again["points"]]
    assert reference.compare(recorded, again) == []
    moved = json.loads(json.dumps(recorded))
    moved["points"][1]["loss"] *= 1.001
    (line,) = reference.compare(moved, again)
    assert line.startswith("r-mid at 4,000 tokens: test loss")
    other_cpu = moved | {"kmeans_sha256": "0" * 64, "machine": {"cpu": "AMD EPYC"}}
    lines = reference.compare(other_cpu, again)
    assert any(ln.startswith("kmeans_sha256") for ln in lines)
    assert "the k-means centroids differ" in lines[-1] and "AMD EPYC" in lines[-1]
