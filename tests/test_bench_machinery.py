"""`slmscale bench` machinery on tiny sizes: the JSON's shape, ratios, targets, n/a GPU rows.

No timing is asserted: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from slmscale.bench.context import QUICK, TINY, Context
from slmscale.bench.results import NO_GPU, Figure, judge, machine_slug, render_table
from slmscale.bench.run import parse_only, run_bench, save
from slmscale.errors import UserError
from slmscale.model import ModelShape

MICRO = ModelShape("micro-1x32", n_layers=1, dim=32, n_heads=2)
TINY_SCALE = replace(
    QUICK,
    name="test",
    fit_points=24,
    naive_starts=20,
    bootstrap=4,
    data_tokens=20_000,
    data_batch=4,
    consume_shape=MICRO,
    consume_context=64,
    consume_steps=1,
    cpu_shapes=(MICRO,),
    cpu_context=32,
    cpu_batch=2,
    cpu_steps=1,
    ray=False,
    gpu_shapes=(MICRO,),
    gpu_context=32,
    gpu_steps=1,
    gpu_shared_trials=2,
    logmel_seconds=6.0,
    unbatched_seconds=3.0,
    eval_shape=MICRO,
    eval_pairs=4,
)
FIELDS = {"section", "name", "value", "unit", "baseline", "baseline_name", "ratio", "target"}


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLMSCALE_HOME", str(home))  # never the repository's reports/bench
        sections = ["data", "train", "tokenize", "eval"]
        figures, desc = run_bench(sections, TINY_SCALE, None, isolate=False)
        out = home / "results.json"
        paths = save(figures, desc, out)
    assert all(p.is_relative_to(home) for p in paths)
    return figures, desc, out


def test_results_json_has_machine_and_one_entry_per_row(cpu_run, monkeypatch):
    figures, desc, out = cpu_run
    doc = json.loads(out.read_text())
    assert set(doc) == {"machine", "figures"}
    m = doc["machine"]
    assert m["cpu_cores"] >= 1 and m["versions"]["torch"]
    # the machine's GPU as torch sees it (None here; named on a GPU machine), measured or not
    import torch

    gpu = torch.cuda.get_device_properties(0).name if torch.cuda.is_available() else None
    assert (m["gpu"] or {}).get("name") == gpu and m["gpu_measured"] is False
    assert len(m["load_average_start"]) == 3 and len(m["load_average_end"]) == 3
    assert set(m["section_seconds"]) == {"data", "train", "tokenize", "eval"}
    assert len(doc["figures"]) == len(figures)
    for row in doc["figures"]:
        assert FIELDS <= set(row) and row["met"] in (True, False, None)
    assert out.with_suffix(".md").read_text().count("\n| ") == len(figures) + 1
    assert not any(f.name == "section failed" for f in figures), [f.note for f in figures]


def test_ratio_is_value_over_baseline(cpu_run):
    figures, _, _ = cpu_run
    with_baseline = [f for f in figures if f.value is not None and f.baseline is not None]
    assert {f.section for f in with_baseline} >= {"data", "tokenize", "eval"}
    for f in with_baseline:
        assert math.isclose(f.ratio, f.value / f.baseline, rel_tol=1e-12)
        assert f.value > 0 and f.baseline > 0


def test_missing_gpu_yields_na_rows(cpu_run):
    figures, _, _ = cpu_run
    gpu_rows = [f for f in figures if "GPU" in f.name]
    # per GPU size: tokens/s, MFU, peak memory; then the shared GPU and HuBERT
    assert len(gpu_rows) == 3 * len(TINY_SCALE.gpu_shapes) + 1 + 1
    for f in gpu_rows:
        assert f.value is None and f.met is None and f.ratio is None and f.note == NO_GPU
    assert "n/a" in render_table(figures)


def test_ray_rows_say_why_they_are_skipped(cpu_run):
    figures, _, _ = cpu_run
    (row,) = [f for f in figures if "via Ray Train" in f.name]
    assert row.value is None and "skipped" in row.note


def test_gpu_path_runs_without_ray_on_the_cpu_device(monkeypatch):
    """The GPU code path, pointed at the CPU: every row is built; MFU is n/a without a peak."""
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # importing ray or mlflow now fails
    monkeypatch.setitem(sys.modules, "mlflow", None)
    figures, _ = run_bench(["train"], TINY_SCALE, "cpu", isolate=False)
    names = [f.name for f in figures]
    assert not any(f.name == "section failed" for f in figures), [f.note for f in figures]
    assert any("sharing one GPU" in n for n in names)
    shared = next(f for f in figures if "sharing one GPU" in f.name)
    assert len(shared.extra["per_trial"]) == 2 and shared.value == sum(shared.extra["per_trial"])
    (memory,) = [f for f in figures if f.name.startswith("peak memory")]
    assert memory.value is None and memory.baseline > 0  # off-GPU: nothing measured, predicted
    assert memory.target.startswith("ratio <= 1") and memory.met is None
    (mfu,) = [f for f in figures if f.name.startswith("MFU")]
    assert mfu.value is None and mfu.target == ""  # no peak FLOP/s off-GPU; MICRO: no target


def test_fit_section_rows_and_extrapolation_note():
    figures, _ = run_bench(["fit"], TINY_SCALE, None, isolate=False)
    speed, wall, threaded, boot, *whole = figures
    assert speed.extra["n_points"] == 24 and speed.extra["n_starts"] > 4000
    assert "20 of" in speed.note and "extrapolated" in speed.note
    assert speed.target.startswith("ratio <=") and wall.target == "<= 1 s"
    assert threaded.baseline == speed.value
    assert "vectorised" in boot.name and "extrapolated" in boot.note
    assert boot.extra["n_loop_timed"] < 1000 and boot.baseline > 0
    assert [f.name.split(":")[0] for f in whole] == [
        "slmscale fit --law chinchilla",
        "slmscale fit --law data_constrained",
    ]
    assert all(f.target == "<= 10 s" for f in whole)
    assert speed.extra["objective_fast"] <= speed.extra["objective_naive"] + 1e-9


def test_judge_says_by_how_much_a_target_is_missed():
    fig = judge(Figure("s", "f", 2.0, "s"), "value", "<=", 1.0)
    assert fig.met is False and "2.00x short" in fig.note
    fig = judge(Figure("s", "g", 5.0, "tok/s", 1.0, "b"), "ratio", ">=", 10.0)
    assert fig.ratio == 5.0 and fig.met is False and "2.00x short" in fig.note
    assert judge(Figure("s", "h", None, "x"), "value", ">=", 1.0).met is None


def test_only_rejects_unknown_sections_and_keeps_bench_order():
    assert parse_only("eval,fit") == ["fit", "eval"]
    assert parse_only(None) == ["fit", "data", "train", "tokenize", "eval"]
    assert parse_only(None, gpu=True) == ["data", "train", "tokenize", "eval"]  # no GPU in fit
    assert parse_only("fit", gpu=True) == ["fit"]
    with pytest.raises(UserError, match="unknown section"):
        parse_only("fit,speed")


def test_machine_slug_is_a_file_name():
    slug = machine_slug({"gpu": {"count": 1, "name": "NVIDIA H200"}, "cpu": "x", "cpu_cores": 2})
    assert slug == "gpu-1x-nvidia-h200"
    assert machine_slug({"gpu": None, "cpu": "Intel(R) Xeon(R)", "cpu_cores": 2}) == (
        "cpu-2core-intel-r-xeon-r"
    )


def test_cli_bench_writes_reports_and_exits_2_on_bad_section(tmp_path, monkeypatch, capsys):
    from slmscale import cli
    from slmscale.bench import context

    monkeypatch.setenv("SLMSCALE_HOME", str(tmp_path))
    monkeypatch.setattr(context, "QUICK", TINY_SCALE)
    assert cli.main(["bench", "--only", "nope"]) == 2
    extra = tmp_path / "copy.json"
    assert cli.main(["bench", "--quick", "--only", "eval", "--gpu", "--json", str(extra)]) == 0
    out = capsys.readouterr().out
    written = list((tmp_path / "reports" / "bench").glob("*.json"))
    assert len(written) == 1 and extra.is_file()
    assert json.loads(extra.read_text()) == json.loads(written[0].read_text())
    assert "pairs/s" in out and "section" in out.splitlines()[0]


def test_tiny_model_shape_is_valid():
    assert TINY.dim % TINY.n_heads == 0 and MICRO.dim % MICRO.n_heads == 0


def test_hubert_row_goes_through_the_pipeline_encoder(monkeypatch, tmp_path):
    """The HuBERT branch, on the CPU with a tiny random HuBERT instead of the base geometry."""
    from slmscale.audio.synthetic import tiny_hubert
    from slmscale.bench import tokenize

    monkeypatch.setattr(tokenize, "hubert_base", lambda out: str(tiny_hubert(out)))
    monkeypatch.setattr(tokenize, "GPU_BATCH_SECONDS", 10.0)
    monkeypatch.setattr(tokenize, "HUBERT_LAYER", 3)
    scale = replace(TINY_SCALE, hubert_seconds=6.0, hubert_unbatched_seconds=3.0)
    logmel, hubert = tokenize.measure_tokenize(Context(scale, "cpu"))
    assert hubert.target == ">= 2 audio-h/s" and hubert.met is not None
    assert hubert.extra["batched"]["device"] == "cpu" and hubert.extra["batched"]["batched"]
    assert hubert.extra["unbatched"]["batched"] is False
    assert hubert.extra["batched"]["frames"] >= hubert.extra["unbatched"]["frames"] > 0
    assert logmel.unit == hubert.unit == "audio-h/s"


def test_bench_imports_without_ray_or_mlflow(monkeypatch):
    """The GPU machine has neither: every section must import with both missing."""
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "mlflow", None)
    for name in ("fit", "data", "train", "tokenize", "evaluate", "steps", "run", "ray_train"):
        monkeypatch.delitem(sys.modules, f"slmscale.bench.{name}", raising=False)
        importlib.import_module(f"slmscale.bench.{name}")
    importlib.import_module("slmscale.commands.bench")


def test_only_keeps_the_other_sections_rows_in_the_machine_file(tmp_path, monkeypatch):
    from slmscale.bench.results import machine_description

    monkeypatch.setenv("SLMSCALE_HOME", str(tmp_path))
    desc = machine_description()
    full = [Figure(n, "row", 1.0, "s") for n in ("fit", "data", "train", "tokenize", "eval")]
    (path,) = save(full, desc | {"sections": [f.section for f in full]})
    save([Figure("eval", "row", 2.0, "s")], desc | {"sections": ["eval"]})
    rows = json.loads(path.read_text())["figures"]
    assert [(r["section"], r["value"]) for r in rows] == [
        ("fit", 1.0),
        ("data", 1.0),
        ("train", 1.0),
        ("tokenize", 1.0),
        ("eval", 2.0),
    ]
