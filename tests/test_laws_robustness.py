"""Bad runs the fitter must name, not absorb: a 10x outlier, copied rows, 5% noise, seed repeats."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from slmscale.laws import design, verdicts
from slmscale.laws.chinchilla import ChinchillaParams
from slmscale.laws.study import run_study
from slmscale.laws.synthetic import PAPER_EPOCHS, synthetic_runs
from slmscale.laws.table import validate_runs
from slmscale.paper import SPEECH_LAW

LAW = ChinchillaParams.from_dict(SPEECH_LAW)


def fit(runs, **kw):
    table, excluded = validate_runs(runs, "runs")
    kw.setdefault("n_bootstrap", 40)
    return run_study(table, excluded, source={"label": "runs"}, **kw).doc


def test_a_loss_ten_times_too_high_is_named_and_excluded():
    runs, _ = synthetic_runs(LAW, noise=0.01, seed=3)
    bad = runs["run_id"][17]
    runs["loss"][17] *= 10.0
    doc = fit(runs, n_bootstrap=0)
    assert [o["run_id"] for o in doc["outliers"]] == [bad]
    o = doc["outliers"][0]
    assert o["excluded"] and o["mad_z"] > 50 and o["reason"].startswith("outlier: loss 9.9")
    assert {"run_id": bad, "reason": o["reason"]} in doc["excluded"]
    assert bad not in doc["runs_used"] and doc["quality"]["r2"] > 0.95
    kept = fit(runs, n_bootstrap=0, keep_outliers=True)
    assert [o["run_id"] for o in kept["outliers"]] == [bad] and not kept["outliers"][0]["excluded"]
    assert bad in kept["runs_used"] and kept["quality"]["r2"] < doc["quality"]["r2"]


def test_clean_runs_have_no_outliers():
    runs, _ = synthetic_runs(LAW, noise=0.01, seed=4, epochs=PAPER_EPOCHS)
    assert fit(runs, n_bootstrap=0, law="data_constrained")["outliers"] == []


def test_duplicated_rows_are_flagged_and_counted_once():
    runs, _ = synthetic_runs(LAW, noise=0.01, seed=5)
    once = fit(runs)
    twice = {k: v + v for k, v in runs.items()}
    twice["run_id"] = runs["run_id"] + [f"copy-{r}" for r in runs["run_id"]]
    doc = fit(twice)
    pairs = {tuple(sorted((d["run_id"], d["same_as"]))) for d in doc["duplicates"]}
    assert pairs == {(f"copy-{r}", r) for r in runs["run_id"]}  # one of each pair flagged
    assert doc["n_points"] == once["n_points"] == 35
    assert doc["params"] == once["params"] and doc["ci95"] == once["ci95"]  # not double counted


def test_seed_repeats_are_repeats_not_duplicates():
    runs, _ = synthetic_runs(LAW, noise=0.0, seed=6)
    rng = np.random.default_rng(0)
    rep = {k: [] for k in (*runs, "seed")}
    for s in (0, 1, 2):  # every point trained with three seeds, 1% noise each
        for i, rid in enumerate(runs["run_id"]):
            for k in runs:
                rep[k].append(runs[k][i])
            rep["run_id"][-1] = f"{rid}-s{s}"
            rep["loss"][-1] = runs["loss"][i] * float(np.exp(rng.normal(0.0, 0.01)))
            rep["seed"].append(s)
    doc = fit(rep)
    assert doc["duplicates"] == [] and doc["n_points"] == 35  # one point per (N, D, U_D)
    spread = doc["seed_spread"]["metrics"]["loss"]
    assert spread["points"][0]["n"] == 3 and spread["pooled_std_log"] == pytest.approx(
        0.01, rel=0.2
    )
    assert set(doc["seed_spread"]["metrics"]) >= {"loss", "sblimp_acc"}
    assert doc["identification"]["noise"]["source"] == "seed spread"
    prior = design.prior_from_fit(doc, "fit.json")  # `slmscale design --prior` uses it too
    assert prior.noise == pytest.approx(spread["pooled_std_log"])
    assert "seed spread" in prior.noise_source


def test_five_percent_noise_warns_nothing_and_stays_in_the_box():
    runs, _ = synthetic_runs(LAW, noise=0.05, seed=7, epochs=PAPER_EPOCHS)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # numpy's divide / invalid warnings
        doc = fit(runs, law="data_constrained", n_bootstrap=50)
    for k, v in doc["verdicts"].items():
        lo, hi = v["interval"]
        if k in verdicts.BOX and lo is not None:
            b_lo, b_hi = verdicts.BOX[k]  # fit.json rounds to 6 digits: the bounds to within 1e-5
            assert b_lo * (1 - 1e-5) <= lo <= hi <= b_hi * (1 + 1e-5), (k, v["interval"])
            on_edge = verdicts.edge_of(k, lo) or verdicts.edge_of(k, hi)
            assert bool(on_edge) == bool(v["interval_edge"]), (k, v)
            assert not (on_edge and v["identified"]), (k, v)
