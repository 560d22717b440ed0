"""fit.json carries an interval for every reported number and says what is not identified."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from slmscale.bench.fit import lbfgs_fit
from slmscale.cli import main
from slmscale.laws.batchfit import best_of_starts
from slmscale.laws.bootstrap import resample_weights, stratified_weights, warm_starts_from
from slmscale.laws.chinchilla import ChinchillaParams, fit_chinchilla
from slmscale.laws.data_constrained import fit_data_constrained
from slmscale.laws.gamma import at_chance, gamma_q, interval
from slmscale.laws.identify import is_identified, not_identified
from slmscale.laws.rstarfit import fit_rstar_batch
from slmscale.laws.synthetic import PAPER_EPOCHS, PAPER_N, PAPER_RATIOS, synthetic_runs
from slmscale.paper import SPEECH_LAW

LAW = ChinchillaParams.from_dict(SPEECH_LAW)


def write_csv(path, cols):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(cols))
        w.writerows(zip(*cols.values(), strict=True))


@pytest.fixture(scope="module")
def fit_doc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fit")
    runs, curves = synthetic_runs(LAW, epochs=PAPER_EPOCHS, noise=0.002, seed=4)
    write_csv(tmp / "runs.csv", runs)
    write_csv(tmp / "curves.csv", curves)
    args = ["fit", "--runs", str(tmp / "runs.csv"), "--curves", str(tmp / "curves.csv")]
    args += ["--law", "data_constrained", "--bootstrap", "60", "--unique-tokens", "10.89e9"]
    assert main([*args, "--json", str(tmp / "fit.json")]) == 0
    return json.loads((tmp / "fit.json").read_text())


def test_fit_json_has_an_interval_for_every_reported_number(fit_doc):
    ci = fit_doc["ci95"]
    for k in ("E", "A", "B", "alpha", "beta", "R_star_N", "R_star_D", "G", "a", "b"):
        lo, hi = ci[k]
        assert lo is not None and hi is not None and lo <= hi, k
    assert ci["envelope_gamma"][0] <= fit_doc["envelope"]["law"]["gamma"] <= ci["envelope_gamma"][1]
    for m in ("sblimp_acc",):
        for k in ("gamma_q", "gamma_q_error", "gamma_q_text", "gamma_q_text_error", "ratio"):
            assert all(v is not None for v in ci[f"{k}.{m}"]), (k, m)
    row = next(r for r in fit_doc["table3"] if r["metric"] == "sblimp_acc")
    assert row["ci95"]["ratio_ours"] == ci["ratio.sblimp_acc"]
    assert row["error_rate"]["gamma_text_reference"] > row["gamma_text_reference"]
    # DESIGN.md keys stay; intervals, identification and the data available are added.
    assert {
        "law",
        "params",
        "ci95",
        "huber_delta",
        "n_points",
        "objective",
        "excluded",
        "compute_optimal",
        "source",
    } <= set(fit_doc)
    assert {"a", "b", "G"} <= set(fit_doc["compute_optimal"])
    assert isinstance(fit_doc["not_identified"], list) and fit_doc["identification_rule"]
    assert fit_doc["unique_tokens_available"] == 10.89e9
    assert fit_doc["bootstrap"]["columns"][-2:] == ["R_star_N", "R_star_D"]
    assert np.shape(fit_doc["bootstrap"]["samples"]) == (60, 7)
    assert "profile_ci95" in fit_doc["data_constrained"]


def test_plan_on_that_fit_reads_its_unique_tokens(fit_doc, tmp_path, capsys):
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(fit_doc))
    assert main(["plan", "--fit", str(path), "--flops", "1e22"]) == 0
    out = capsys.readouterr().out
    assert "U_D = 1.089e+10" in out and "Eq. 6 (assumes unlimited unique data)" in out
    assert "orders of magnitude above the largest compute fitted" in out


def test_identification_rule_is_a_factor_on_the_interval():
    assert is_identified("E", [1.7, 1.8]) and not is_identified("A", [2.0, 25.0])
    assert is_identified("A", [2.0, 19.0])  # a factor 9.5 < 10 for a scale constant
    assert not is_identified("alpha", [0.1, 0.45])  # a factor 4.5 > 3 for an exponent
    assert not is_identified("gamma_q.x", [-0.01, 0.02])  # contains zero
    assert is_identified("envelope_gamma", [-0.04, -0.02])  # judged by magnitude
    assert not is_identified("R_star_D", [3.0, None])
    assert not_identified({"B": [30.0, 40.0], "A": [1.0, 100.0]}) == ["A"]
    # E on the box edge: the N-term absorbs it, so A and alpha (and Eq. 6) are conditional.
    edge = not_identified({"B": [30.0, 40.0], "alpha": [0.014, 0.021]}, ["E"])
    assert edge == ["A", "B", "E", "G", "a", "alpha", "b"]


def test_bias_corrected_interval_contains_its_estimate():
    s = np.random.default_rng(0).lognormal(0.0, 0.3, 500)
    lo, hi = interval(s)
    assert lo == pytest.approx(np.percentile(s, 2.5)) and hi == pytest.approx(
        np.percentile(s, 97.5)
    )
    lo, hi = interval(s, estimate=1.2)  # samples centred below the estimate: shifted up
    assert lo > np.percentile(s, 2.5) and lo <= 1.2 <= hi
    assert interval(s[:5]) == [None, None]


def test_vectorised_refits_match_a_loop_of_scipy_fits():
    # The house's optimizer against scipy's L-BFGS-B from the same warm starts, replicate by
    # replicate: never worse.
    runs, _ = synthetic_runs(LAW, noise=0.01, seed=5)
    N, D, L = (np.array(runs[k]) for k in ("params", "tokens", "loss"))
    fit = fit_chinchilla(N, D, L)
    W = resample_weights(L.size, 12, 3)
    batch = best_of_starts(N, D, L, W, np.array(warm_starts_from(fit)))
    for w, obj in zip(W, batch.objective, strict=True):
        f = lbfgs_fit(N, D, L, warm_starts_from(fit), weights=w)
        assert obj <= f.objective * (1 + 1e-4) + 1e-12


def test_vectorised_rstar_matches_the_profile_fit():
    runs, _ = synthetic_runs(LAW, ratios=(), epochs=PAPER_EPOCHS, noise=0.001, seed=3)
    N, D, U, L = (np.array(runs[k]) for k in ("params", "tokens", "unique_tokens", "loss"))
    ref = fit_data_constrained(LAW, N, D, U, L)
    P = np.array([[LAW.E, LAW.A, LAW.B, LAW.alpha, LAW.beta]])
    rs, obj = fit_rstar_batch(P, N, D, U, L, np.ones((1, L.size)))
    assert obj[0] <= ref.objective * (1 + 1e-6)
    assert rs[0, 0] == pytest.approx(ref.R_star_N, rel=0.05)
    assert rs[0, 1] == pytest.approx(ref.R_star_D, rel=0.1)


def test_stratified_resampling_keeps_both_kinds_of_runs():
    strata = np.array([0] * 35 + [1] * 40)
    W = stratified_weights(strata, 50, 1)
    assert np.all(W[:, :35].sum(axis=1) == 35) and np.all(W[:, 35:].sum(axis=1) == 40)
    assert np.array_equal(W, stratified_weights(strata, 50, 1))


def test_gamma_q_is_one_definition_and_chance_gets_none():
    # A known power law in accuracy, then saturation: the pre-saturation rule drops the plateau.
    C = np.geomspace(1e15, 1e21, 25)
    top = 0.3 * (1e4) ** 0.04
    acc = np.where(C <= 1e19, 0.3 * (C / 1e15) ** 0.04, top * (C / 1e19) ** 0.001)
    g = gamma_q(C, acc)
    assert g["raw"]["n_saturated"][0] == 8  # the points past 1e19 (still rising, barely)
    assert g["raw"]["gamma"][0] == pytest.approx(0.04, rel=1e-6)
    err = gamma_q(C, 1 - 0.5 * (C / 1e15) ** -0.1)["error_rate"]["gamma"][0]
    assert err == pytest.approx(0.1, rel=1e-6)
    assert at_chance([0.49, 0.51, 0.505], 0.5) and not at_chance([0.5, 0.6], 0.5)


def test_generator_single_epoch_runs_are_eq4():
    runs, _ = synthetic_runs(LAW, sizes=PAPER_N, ratios=PAPER_RATIOS)
    N, D, L = (np.array(runs[k]) for k in ("params", "tokens", "loss"))
    assert np.allclose(L, LAW.predict(N, D), rtol=1e-12)
    fit = fit_chinchilla(N, D, L)
    assert fit.params.A == pytest.approx(13.9, rel=1e-2) and fit.params.B == pytest.approx(
        39.8, rel=1e-2
    )


def test_an_interval_ended_by_the_search_box_is_not_identified():
    from slmscale.laws import verdicts
    from slmscale.laws.study import run_study
    from slmscale.laws.table import validate_runs

    assert verdicts.check("alpha", [2.5, 3.0]).startswith("interval reaches the search box")
    assert verdicts.check("R_star_D", [3.0, 1e4]).startswith("interval reaches the search box")
    assert verdicts.check("E", [np.exp(-5.0), 1.7]).startswith("interval reaches")
    assert verdicts.check("beta", [0.2, 0.3]) == "pass"
    # Two sizes, three budgets, 1% noise: E's replicates run down to the box edge (e^-5), where
    # the N-term absorbs it: E is a bound, and A, alpha (and Eq. 6) are not identified with it.
    runs, _ = synthetic_runs(LAW, noise=0.01, sizes=(20e6, 80e6), ratios=(2, 8, 32))
    table, excluded = validate_runs(runs, "tiny")
    doc = run_study(table, excluded, source={"label": "tiny"}, n_bootstrap=200).doc
    e = doc["verdicts"]["E"]
    assert e["interval_edge"] == "lo" and e["interval"][0] == pytest.approx(np.exp(-5.0))
    assert e["checks"]["interval"] == "interval reaches the search box's lower end"
    assert {"E", "A", "alpha", "G", "a", "b"} <= set(doc["not_identified"])
