"""`slmscale demo` with both ablations on the tiny world: the audiobook corpus and its grid, the
unigram tokenizer (benchmarks encoded with the corpus's model) and its grid, each in its own
experiment, compared by `slmscale report --compare` (Figures 3 and 5 in the report), and the
time breakdown read back from the runs."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from slmscale.demo import language as lang
from slmscale.demo.world import PRESETS

COMMON = """
batch_size: 4
context: 128
optimizer: {lr_max: 1.0e-2, lr_min: 3.0e-4, warmup_min_steps: 2, warmup_fraction: 0.05}
eval: {n_evals: 2}
train: {precision: fp32, checkpoint_every_steps: 1000, deterministic: true}
resources: {workers: 1, cpus_per_worker: 0.9, max_concurrent_trials: 2, max_failures: 0, trials_per_job: 3}
"""
BENCH = """
benchmarks:
  - {name: sblimp, units: units/sblimp%(s)s, root: world/benchmarks/sblimp}
  - {name: swuggy, units: units/swuggy%(s)s, root: world/benchmarks/swuggy}
  - {name: topic_cloze, units: units/topic_cloze%(s)s, root: world/benchmarks/topic_cloze}
  - {name: story_cloze, units: units/story_cloze%(s)s, root: world/benchmarks/story_cloze}
"""
MODELS = """
models:
  - {name: t-small, layers: 1, dim: 16, heads: 2, intermediate: 32}
  - {name: t-mid, layers: 1, dim: 32, heads: 2, intermediate: 64}
  - {name: t-large, layers: 2, dim: 32, heads: 2, intermediate: 64}
"""
MAIN = "name: demo_tiny\nunits: [{path: units/demo}]" + MODELS + "tokens: [2000, 6000]\n"
BOOK = "name: demo_tiny_book\nunits: [{path: units/audiobook}]" + MODELS + "tokens: [6000]\n"
UNI = (
    "name: demo_tiny_uni\nunits: [{path: units/demo_unigram}]"
    + "\n".join(MODELS.splitlines()[:4])
    + "\ntokens: [1000, 3000]\n"
)


def test_passages_keep_the_sentences_but_not_the_story():
    """An audiobook passage: grammatical sentences of the stories' kind, but topics mixed."""
    mixed = 0
    for i in range(200):
        passage = lang.sample_passage(np.random.default_rng([5, i]))
        assert 3 <= len(passage) <= 5
        for s in passage:
            assert lang.agreement_violations(s) == 0
        topics = {lang.LEXICON[f].topic for s in passage for f in s} - {None}
        mixed += len(topics) > 1
    assert mixed > 100  # a story keeps one topic (test_demo_world_language); passages rarely


@pytest.mark.slow
def test_tiny_demo_with_both_ablations(tmp_path):
    from slmscale.demo.run import run_demo
    from slmscale.demo.timing import format_breakdown, trial_times
    from slmscale.tracking import client
    from slmscale.units import load_meta, tokenizer_fingerprint

    specs = {}
    for name, text, suffix in (("main", MAIN, ""), ("book", BOOK, ""), ("uni", UNI, "_unigram")):
        specs[name] = tmp_path / f"{name}.yaml"
        specs[name].write_text(text + COMMON + BENCH % {"s": suffix})
    world = replace(PRESETS["tiny"], audiobook_passages=80)
    work = tmp_path / "work"
    kw = dict(
        world=world,
        spec_file=specs["main"],
        tokenize_engine="local",
        ablations=True,
        audiobook_spec=specs["book"],
        unigram_spec=specs["uni"],
        unigram_vocab=48,  # the tiny corpus allows at most ~60 pieces
    )
    result = run_demo(work, **kw)

    # the benchmarks' unigram units were made by the corpus's unigram model
    units = work / "units"
    fp = tokenizer_fingerprint(load_meta(units / "demo_unigram"))
    for b in ("sblimp", "swuggy", "topic_cloze", "story_cloze"):
        assert tokenizer_fingerprint(load_meta(units / f"{b}_unigram")) == fp
        assert tokenizer_fingerprint(load_meta(units / b)) != fp

    # every trial of the three grids finished, each grid in its own experiment
    c = client(result.tracking_uri)
    finished = {}
    for exp_name in ("demo_tiny", "demo_tiny_book", "demo_tiny_uni"):
        exp = c.get_experiment_by_name(exp_name)
        runs = c.search_runs([exp.experiment_id], "tags.`slmscale.kind` = 'train'")
        assert all(r.info.status == "FINISHED" for r in runs)
        finished[exp_name] = runs
    counts = {k: len(v) for k, v in finished.items()}
    assert counts == {"demo_tiny": 6, "demo_tiny_book": 3, "demo_tiny_uni": 4}
    tokenizers = {e: {r.data.params["tokenizer"] for r in v} for e, v in finished.items()}
    assert tokenizers["demo_tiny"] == tokenizers["demo_tiny_book"] != tokenizers["demo_tiny_uni"]
    assert result.compared == ["demo_tiny_book", "demo_tiny_uni"]

    # the report compares them exactly as `slmscale report --compare` does for any study
    rep = result.report_dir
    md, html = (rep / "report.md").read_text(), (rep / "report.html").read_text()
    for fig in ("fig3_data_ablation", "fig5_tokenizer_envelopes"):
        assert (rep / f"{fig}.png").is_file()
        assert f"({fig}.png)" in md
    assert "Figure 3: data ablation" in md and "Figure 3: data ablation" in html
    assert md.index("Figure 3: data ablation") < md.index("## Figure 4")
    assert md.index("## Figure 5: tokenizers compared") < md.index("## Fit quality")
    assert "| unigram48 | demo_tiny_uni | 4 |" in md
    comp = json.loads((rep / "comparison.json").read_text())
    assert comp["data_ablation"]["arms"] == ["demo_tiny", "demo_tiny_book"]
    assert len(comp["data_ablation"]["rows"]) == 2 * 3  # 3 sizes at the shared budget
    # 4 unigram runs cannot carry Eq. 4's 5 constants: the report says so where its row would be
    assert not (rep / "fit-demo_tiny_uni.json").exists()
    assert "no Eq. 4 fit (4 single-epoch run(s) left to fit, fewer than the 5" in md

    # the time breakdown is read back from the runs: one row per trial, training <= total
    times = trial_times(result.tracking_uri, result.experiments)
    assert len(times) == 13
    assert all(0 <= t.train_s <= t.total_s + 1e-6 for t in times)
    text = format_breakdown(result.timings, result.reused, times, result.grid_stages)
    assert "grid_unigram" in text and "per trial (median of 13 trials)" in text

    # a rerun reuses everything
    again = run_demo(work, **kw)
    assert all(again.reused.values()), again.reused


def test_time_breakdown_medians_and_stage_rows():
    from slmscale.demo.timing import TrialTime, format_breakdown, summary

    times = [
        TrialTime("a", "demo", total_s=20.0, train_s=5.0, start_s=12.0, end_s=1.0),
        TrialTime("b", "demo", total_s=30.0, train_s=20.0, start_s=8.0, end_s=1.5),
        TrialTime("c", "demo_book", total_s=12.0, train_s=2.0, start_s=9.0, end_s=0.5),
    ]
    s = summary(times)
    assert s["median_total_s"] == 20.0 and s["median_train_s"] == 5.0
    assert s["median_fixed_s"] == 10.0  # fixed costs 15, 10, 10
    text = format_breakdown(
        {"world": 3.0, "grid": 40.0, "grid_audiobook": 15.0, "report": 2.0},
        {"world": True},
        times,
        {"grid": "demo", "grid_audiobook": "demo_book"},
    )
    assert "world" in text and "(reused)" in text
    grid_line = next(line for line in text.splitlines() if line.strip().startswith("grid "))
    assert "2" in grid_line and "25.0 s in trials" in grid_line
    assert "10.0 s fixed cost" in text and "27 s training of 62 s" in text


def test_a_packs_start_up_is_shared_by_its_trials():
    from slmscale.demo.timing import TrialTime, _charge_job_start_up, summary

    times = [
        TrialTime("a", "demo", total_s=3.0, train_s=2.0, start_s=0.3, end_s=0.4),
        TrialTime("b", "demo", total_s=5.0, train_s=4.0, start_s=0.3, end_s=0.4),
        TrialTime("c", "demo", total_s=4.0, train_s=3.0, start_s=0.3, end_s=0.4),
        TrialTime("alone", "demo", total_s=20.0, train_s=5.0, start_s=13.0, end_s=1.0),
    ]
    # a, b, c: one Train job started at t=1,000 ms whose first run opened at t=13,000 ms
    jobs = {"pack-1": (1_000.0, [(0, 13_000), (1, 16_500), (2, 22_000)])}
    charged = _charge_job_start_up(times, jobs)
    assert [t.job_share_s for t in charged] == [4.0, 4.0, 4.0, 0.0]
    assert [t.fixed_s for t in charged] == [5.0, 5.0, 5.0, 15.0]
    assert [t.total_s for t in charged[:3]] == [7.0, 9.0, 8.0]
    assert summary(charged)["median_job_share_s"] == 4.0
