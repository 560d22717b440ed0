"""`slmscale plan`: Eq. 6 arithmetic, inverse questions, intervals and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slmscale.cli import main
from slmscale.errors import UserError
from slmscale.laws import plan
from slmscale.laws.chinchilla import ChinchillaParams
from slmscale.laws.compute_optimal import optimal_loss
from slmscale.paper import SPEECH_LAW

LAW = ChinchillaParams.from_dict(SPEECH_LAW)


def fit_doc(samples=()):
    from slmscale.laws.compute_optimal import ComputeOptimal

    doc = {
        "law": "chinchilla",
        "params": dict(SPEECH_LAW),
        "compute_optimal": ComputeOptimal.from_params(LAW).as_dict(),
        "downstream": {
            "sblimp_acc": {
                "linear": {
                    "slope": -0.1,
                    "intercept": 0.8,
                    "pearson_r": -0.99,
                    "loss_min": 1.9,
                    "loss_max": 3.0,
                    "n_points": 10,
                    "n_saturated": 2,
                    "plateau": 0.61,
                }
            }
        },
    }
    if samples:
        doc["bootstrap"] = {"columns": ["E", "A", "B", "alpha", "beta"], "samples": samples}
    return doc


def test_optimal_allocation_spends_the_budget():
    for C in (1e18, 2.5e20, 1e22):
        a = plan.plan_for_compute(fit_doc(), C)
        assert 6 * a["N_opt"] * a["D_opt"] == pytest.approx(C, rel=1e-12)
        assert a["loss"] == pytest.approx(float(optimal_loss(LAW, C)))


def test_intervals_from_bootstrap_samples_and_gpu_hours():
    samples = [[1.70, 13.9, 39.8, 0.25, 0.24], [1.76, 13.9, 39.8, 0.25, 0.24]]
    a = plan.plan_for_compute(fit_doc(samples), 1e20, tokens_per_sec=1e5)
    lo, hi = a["loss_ci95"]
    assert lo < a["loss"] < hi and hi - lo == pytest.approx(0.06 * 0.95, rel=1e-6)
    assert a["gpu_hours"] == pytest.approx(a["D_opt"] / 1e5 / 3600)
    b = plan.plan_for_compute(fit_doc(), 1e20, mfu=0.5, peak_flops=1e15)
    assert b["gpu_hours"] == pytest.approx(1e20 / 5e14 / 3600)


def test_target_loss_and_target_metric_invert_the_forward_plan():
    C, _ = plan.compute_for_loss(fit_doc(), 2.2)
    assert float(optimal_loss(LAW, C)) == pytest.approx(2.2, rel=1e-9)
    L = plan.loss_for_metric(fit_doc(), "sblimp_acc", 0.58)
    assert L == pytest.approx(2.2)
    with pytest.raises(UserError, match="below the irreducible loss E = 1.73"):
        plan.compute_for_loss(fit_doc(), 1.7)
    with pytest.raises(UserError, match="saturates at 0.61"):
        plan.loss_for_metric(fit_doc(), "sblimp_acc", 0.65)
    with pytest.raises(UserError, match="no linear relation for swuggy_acc"):
        plan.loss_for_metric(fit_doc(), "swuggy_acc", 0.6)


def test_plan_cli(tmp_path, capsys):
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(fit_doc()))
    assert (
        main(["plan", "--fit", str(path), "--target", "sblimp_acc=0.58", "--format", "json"]) == 0
    )
    ans = json.loads(capsys.readouterr().out)
    assert ans["needed_loss"] == pytest.approx(2.2)
    assert 6 * ans["N_opt"] * ans["D_opt"] == pytest.approx(ans["flops"], rel=1e-12)
    assert np.isclose(ans["metrics"]["sblimp_acc"]["value"], 0.58)
    assert main(["plan", "--fit", str(path), "--flops", "1e20"]) == 0
    assert "N_opt" in capsys.readouterr().out
    assert main(["plan", "--fit", str(path), "--target", "sblimp"]) == 2
    assert main(["plan", "--fit", str(tmp_path / "none.json"), "--flops", "1"]) == 2
    assert main(["plan", "--fit", str(path), "--flops", "1e20", "--mfu", "0.4"]) == 2
    assert "Traceback" not in capsys.readouterr().err
