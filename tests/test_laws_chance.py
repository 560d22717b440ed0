"""A benchmark at chance gets no law; predicted accuracies stay inside [chance, 1]."""

from __future__ import annotations

import numpy as np
import pytest

from slmscale.laws import plan
from slmscale.laws.chance import chance_test
from slmscale.laws.chinchilla import ChinchillaParams
from slmscale.laws.downstream import fit_linear_relation
from slmscale.laws.study import run_study
from slmscale.laws.synthetic import synthetic_runs
from slmscale.laws.table import validate_runs
from slmscale.paper import SPEECH_LAW

LAW = ChinchillaParams.from_dict(SPEECH_LAW)


def test_the_best_of_many_runs_at_chance_is_still_chance():
    rng = np.random.default_rng(0)
    luck = rng.binomial(200, 0.5, 125) / 200  # 125 runs guessing on 200 pairs
    assert luck.max() > 0.57  # the best beats 0.5 by luck alone
    t = chance_test(luck, 0.5, 200)
    assert t["at_chance"] and t["p_value"] > 0.05 and t["n_runs"] == 125
    real = chance_test(np.r_[luck, 0.66], 0.5, 200)  # one run really learned something
    assert not real["at_chance"] and real["p_value"] < 0.05
    assert chance_test([0.44, 0.53, 0.495], 0.5, 200)["at_chance"]  # the demo's StoryCloze
    unknown = chance_test([0.55, 0.6], 0.5, None)  # no item count: the margin rule, said so
    assert not unknown["at_chance"] and "item count unknown" in unknown["method"]


def test_a_benchmark_at_chance_gets_no_exponent_and_no_line():
    runs, _ = synthetic_runs(LAW, noise=0.003, seed=1)
    n = len(runs["loss"])
    runs["story_cloze_acc"] = list(np.random.default_rng(1).binomial(200, 0.5, n) / 200)
    runs["story_cloze_acc_n_items"] = [200] * n
    table, excluded = validate_runs(runs, "runs")
    doc = run_study(table, excluded, source={"label": "r"}, n_bootstrap=20).doc
    d = doc["downstream"]["story_cloze_acc"]
    assert d["at_chance"] and d["chance_test"]["n_items"] == 200
    assert d["gamma_q"] is None and d["envelope"] is None and d["linear"] is None
    v = doc["verdicts"]["gamma_q.story_cloze_acc"]
    assert not v["identified"] and "at chance" in v["reason"]
    assert not doc["downstream"]["sblimp_acc"]["at_chance"]  # 0.5-0.62 over 35 runs: learned


def test_predicted_accuracy_stays_below_one_and_saturation_has_width():
    loss = np.linspace(1.9, 3.0, 20)
    acc = np.clip(1.6 - 0.25 * loss, 0.5, 0.97)  # near 1 at the low-loss end, no plateau
    rel = fit_linear_relation(loss, acc, chance=0.5)
    for L in (0.5, 1.0, 1.5):  # far below the fitted losses, where the line passes 1
        assert rel(L) > 1.0 and 0.5 < rel.bounded(L) < 1.0
    doc = {
        "law": "chinchilla",
        "params": dict(SPEECH_LAW),
        "compute_optimal": {},
        "downstream": {"swuggy_acc": {"linear": rel.as_dict()}},
    }
    ans = plan.plan_for_compute(doc, 1e26)
    assert ans["loss"] < 1.9 and 0.5 < ans["metrics"]["swuggy_acc"]["value"] < 1.0
    sat = fit_linear_relation(loss, np.minimum(1.3 - 0.25 * loss, 0.8), chance=0.5)
    assert sat.plateau == pytest.approx(0.8)
    doc["downstream"]["swuggy_acc"]["linear"] = sat.as_dict()
    lo, hi = plan.plan_for_compute(doc, 1e26)["metrics"]["swuggy_acc"]["ci95"]
    assert lo < hi and 0.5 <= lo and hi <= 1.0  # saturated: an honest, non-zero width
