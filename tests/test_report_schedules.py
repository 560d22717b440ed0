"""`slmscale report --compare-schedule EXP`: one grid under cosine and under WSD, side by side.

Two experiments are written into a fresh SQLite store as the grid logs them (no training): the
same grid points, WSD losses 0.5% above cosine's, WSD's branches tagged with their branch step
and one trunk run per size.  The report must give the per-point differences, both studies' Eq. 4
constants and the compute each spent, computed by hand here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from slmscale.cli import main
from slmscale.laws.chinchilla import ChinchillaParams
from slmscale.laws.synthetic import synthetic_runs
from slmscale.paper import SPEECH_LAW
from slmscale.report.schedules import compare_constants
from slmscale.tracking import schema

SIZES = (20.4e6, 84.9e6, 154.2e6, 308.3e6, 822.2e6)
RATIOS = (2, 4, 8, 16, 32, 64)
PER_STEP = 64 * 2050


def _log(uri: str, experiment: str, runs: dict, curves, schedule: str, shift: float) -> float:
    """Log the runs as `schedule`; returns the training FLOPs they really spent."""
    from mlflow.entities import Metric, Param, RunTag

    from slmscale.tracking.store import client, get_or_create_experiment

    c = client(uri)
    exp = get_or_create_experiment(uri, experiment)
    grid = c.create_run(exp, tags={schema.TAG_KIND: schema.KIND_GRID}, start_time=1_000)
    c.set_terminated(grid.info.run_id, "FINISHED", end_time=61_000)  # 60 s of wall time
    spent, longest = 0.0, {}
    for i, rid in enumerate(runs["run_id"]):
        n, d = runs["params"][i], runs["tokens"][i]
        steps = -(-int(d) // PER_STEP)
        tags = {schema.TAG_KIND: schema.KIND_TRAIN, schema.TAG_SCHEDULE: schedule}
        own = d
        if schedule != "cosine":
            b = round(0.8 * steps)
            tags[schema.TAG_BRANCH_STEP] = str(b)
            own = d - b * PER_STEP
            longest[n] = max(longest.get(n, 0), b)
        spent += 6 * n * own
        run = c.create_run(exp, tags=tags, run_name=rid)
        params = {"n_params": n, "tokens": d, "unique_tokens": runs["unique_tokens"][i],
                  "batch_size": 64, "context": 2050, "tokenizer": "hubert25hz-k500"}  # fmt: skip
        loss = runs["loss"][i] * (1 + shift)
        curve = [
            Metric(schema.M_TEST_LOSS, curves["test_loss"][j], 0, int(curves["tokens"][j]))
            for j, r in enumerate(curves["run_id"])
            if r == rid
        ]
        c.log_batch(
            run.info.run_id,
            metrics=[Metric(schema.M_TEST_LOSS_FINAL, loss, 0, 0), *curve],
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        c.set_terminated(run.info.run_id, "FINISHED")
    for n, b in longest.items():  # one trunk per size, to its last branch step
        trunk = c.create_run(exp, tags={schema.TAG_KIND: schema.KIND_TRUNK})
        c.log_batch(
            trunk.info.run_id,
            metrics=[Metric(schema.M_TRUNK_STEPS, b, 0, 0)],
            params=[Param("n_params", str(n)), Param("batch_size", "64"), Param("context", "2050")],
        )
        c.set_terminated(trunk.info.run_id, "FINISHED")
        spent += 6 * n * b * PER_STEP
    return spent


@pytest.mark.timeout(900)
def test_report_compares_two_schedules_of_one_grid(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    law = ChinchillaParams.from_dict(SPEECH_LAW)
    runs, curves = synthetic_runs(law, sizes=SIZES, ratios=RATIOS, noise=0.004)
    cosine = _log(uri, "cos", runs, curves, "cosine", 0.0)
    wsd = _log(uri, "wsd", runs, curves, "wsd (1-sqrt, 20%)", 0.005)
    out = tmp_path / "report"
    args = ["report", "--experiment", "cos", "--compare-schedule", "wsd", "--tracking-uri", uri]
    assert main([*args, "--bootstrap", "20", "--law", "chinchilla", "--out", str(out)]) == 0
    doc = json.loads((out / "schedules.json").read_text())
    assert doc["experiments"] == {"cos": "cosine", "wsd": "wsd (1-sqrt, 20%)"}
    assert doc["points"]["n"] == len(SIZES) * len(RATIOS)
    assert doc["points"]["median_rel_diff"] == pytest.approx(0.005, rel=1e-3)
    assert doc["points"]["max_abs_rel_diff"] == pytest.approx(0.005, rel=1e-3)
    assert doc["cost"]["cos"]["flops"] == pytest.approx(cosine, rel=1e-5)
    assert doc["cost"]["wsd"]["flops"] == pytest.approx(wsd, rel=1e-5)
    assert doc["flops_ratio"] == pytest.approx(wsd / cosine, rel=1e-5) and 0.5 < wsd / cosine < 0.7
    assert doc["cost"]["cos"]["wall_s"] == pytest.approx(60.0)
    assert set(doc["constants"]) == {"E", "A", "B", "alpha", "beta"}
    text = (out / "report.md").read_text()
    assert "Schedules: cosine against wsd" in text and "fig_schedules" in text
    assert (out / "fig_schedules.png").is_file()


def test_constants_inside_each_others_interval():
    a = {"params": {"E": 1.7, "A": 10.0}, "ci95": {"E": [1.6, 1.8], "A": [5.0, 20.0]}}
    b = {"params": {"E": 1.75, "A": 30.0}, "ci95": {"E": [1.5, 1.9], "A": [25.0, 40.0]}}
    got = compare_constants(a, b)
    assert got["E"]["a_in_b"] and got["E"]["b_in_a"]
    assert got["A"]["a_in_b"] is False and got["A"]["b_in_a"] is False
    assert got["B"]["a_in_b"] is None  # neither fit has it: no claim either way
    assert np.isfinite(got["E"]["a"])


def test_difference_z_by_hand():
    a = {"params": {"E": 1.7, "A": 10.0}, "ci95": {"E": [1.6, 1.8], "A": [5.0, 20.0]}}
    b = {"params": {"E": 1.75, "A": 30.0}, "ci95": {"E": [1.5, 1.9], "A": [25.0, 40.0]}}
    got = compare_constants(a, b)
    se_e = np.hypot(0.2 / 3.92, 0.4 / 3.92)
    assert got["E"]["z"] == pytest.approx(0.05 / se_e)
    se_a = np.hypot(np.log(4) / 3.92, np.log(1.6) / 3.92)  # A on log scale
    assert got["A"]["z"] == pytest.approx(np.log(3) / se_a)
    assert got["B"]["z"] is None


def test_same_truth_fails_inside_often_but_z_at_five_percent():
    """Two studies of one truth, each estimate normal with its own se: "inside the other's 95%
    interval" fails for ~17% of pairs, |z| > 1.96 for 5% (what the report's sentence says)."""
    rng = np.random.default_rng(0)
    n, outside, rejected = 4000, 0, 0
    for _ in range(n):
        se = rng.uniform(0.02, 0.08, size=2)
        est = 0.5 + se * rng.standard_normal(2)
        ci = [[e - 1.96 * s, e + 1.96 * s] for e, s in zip(est, se, strict=True)]
        c = compare_constants(
            {"params": {"beta": est[0]}, "ci95": {"beta": ci[0]}},
            {"params": {"beta": est[1]}, "ci95": {"beta": ci[1]}},
        )["beta"]
        outside += not (c["a_in_b"] and c["b_in_a"])
        rejected += abs(c["z"]) > 1.96
    assert 0.035 < rejected / n < 0.065
    assert outside / n > 0.12
