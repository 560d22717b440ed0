"""Run names read like the grid: `<size>-D<tokens>-e<epochs>`, unique within a grid."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from slmscale.grid.plan import load_plan, run_names, short_count

PAPER = str(Path(__file__).resolve().parents[1] / "tune_spaces" / "paper.yaml")


def test_short_counts():
    assert [short_count(x) for x in (150_000, 40e6, 4.94e9, 13.2e9, 512, 2e12)] == [
        "150k", "40M", "4.94B", "13.2B", "512", "2T",
    ]  # fmt: skip


def test_paper_run_names_are_readable_and_unique():
    trials = load_plan(PAPER).trials
    names = run_names(trials)
    assert len(set(names.values())) == len(trials) == 55
    assert names[trials[0].key] == "20M-D40M-e1"
    assert "823M-D13.2B-e10" in names.values()


def test_trials_the_name_cannot_tell_apart_get_their_key_appended():
    trials = load_plan(PAPER, ["models=[20M]", "extra=[]"]).trials[:1]
    twin = replace(trials[0], data_order=trials[0].data_order + 1)  # a key the name cannot show
    assert twin.key != trials[0].key
    names = run_names([trials[0], twin])
    assert names[trials[0].key] == f"20M-D40M-e1-{trials[0].key[:6]}"
    assert names[twin.key] == f"20M-D40M-e1-{twin.key[:6]}"
