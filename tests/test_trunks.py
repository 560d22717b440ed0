"""Which WSD points share a trunk and what a grid costs under each schedule (pure planning).

On tune_spaces/paper.yaml with `schedule.kind=wsd`: each size's single-pass points and the points
that repeat all the data share one trunk, points that repeat a part of it train alone, and the
cost is counted by hand here (trunk to its last branch step + every cooldown + the lone runs)
against `schedule_cost`, which the dry run and `slmscale design` print.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from slmscale.grid.plan import load_plan
from slmscale.grid.trunks import branch_step, plan_trunks, schedule_cost, trunk_key
from slmscale.model import training_flops

REPO = Path(__file__).resolve().parents[1]
PAPER = str(REPO / "tune_spaces" / "paper.yaml")


@pytest.fixture(scope="module")
def paper_wsd():
    return load_plan(PAPER, ["schedule.kind=wsd"])


def test_each_size_has_one_trunk_of_its_single_pass_and_whole_data_points(paper_wsd):
    available = paper_wsd.data.available_tokens
    trunks = plan_trunks(paper_wsd.trials, available)
    sizes = [t.trial.model_size for t in trunks]
    assert sorted(sizes) == sorted(set(sizes))  # one trunk a size
    for trunk in trunks:
        assert {b.model_size for b in trunk.branches} == {trunk.trial.model_size}
        for b in trunk.branches:  # one pass, or a repeat of the whole store
            assert b.unique_tokens == b.tokens or b.unique_tokens == int(available)
            assert trunk_key(b, available) == trunk.key
        assert trunk.steps == max(branch_step(b) for b in trunk.branches)
        assert trunk.trial.schedule.kind == "constant" and trunk.trial.benchmarks == ()
    in_trunks = {b.key for t in trunks for b in t.branches}
    alone = [t for t in paper_wsd.trials if t.key not in in_trunks]
    # what trains alone repeats a part of the data: its stream is not a prefix of a trunk's
    assert alone and all(int(available) > t.unique_tokens < t.tokens for t in alone)
    assert len({trunk_key(t, available) for t in alone}) == len(alone)


def test_schedule_cost_counts_trunks_cooldowns_and_lone_runs(paper_wsd):
    trials, available = paper_wsd.trials, paper_wsd.data.available_tokens
    trunks = plan_trunks(trials, available)
    in_trunks = {b.key for t in trunks for b in t.branches}
    by_hand = sum(training_flops(t.n_params, t.tokens) for t in trials if t.key not in in_trunks)
    for trunk in trunks:
        per_step = trunk.trial.batch_size * trunk.trial.context
        by_hand += training_flops(trunk.trial.n_params, trunk.steps * per_step)
        for b in trunk.branches:  # its budget less the trunk's steps before its branch step
            by_hand += training_flops(b.n_params, b.tokens - branch_step(b) * per_step)
    cost = schedule_cost(trials, available)
    assert cost.wsd == pytest.approx(by_hand, rel=1e-12)
    assert cost.cosine == pytest.approx(sum(t.flops for t in trials), rel=1e-12)
    assert cost.trunks == len(trunks) == 5
    assert 0.25 < cost.saved < 0.40  # the multi-epoch points share little
    # costed both ways whatever the spec's schedule
    cosine_plan = load_plan(PAPER)
    assert schedule_cost(cosine_plan.trials, available).wsd == pytest.approx(cost.wsd, rel=1e-12)


def test_design_prices_the_grid_both_ways(paper_wsd, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "slmscale.cli", "design", PAPER, "--sims", "20", "--no-variants",
         "--next", "0", "--json", str(tmp_path / "d.json")],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    sched = json.loads((tmp_path / "d.json").read_text())["schedules"]
    cost = schedule_cost(paper_wsd.trials, paper_wsd.data.available_tokens)
    assert sched["spec_schedule"] == "cosine" and sched["trunks"] == cost.trunks
    assert sched["wsd_flops"] == pytest.approx(cost.wsd, rel=1e-3)
    tp = paper_wsd.spec.throughput
    cos_h, wsd_h = cost.gpu_hours(tp.mfu, tp.peak_flops)
    assert sched["wsd_gpu_hours"] == pytest.approx(wsd_h, rel=1e-3) and wsd_h < cos_h
    assert f"{cost.saved:.0%} less" in out.stdout and "(the spec's)" in out.stdout
