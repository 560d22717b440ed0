"""`slmscale plan` with the data limit: Eq. 7/8 at fixed compute, Eq. 6 beside it, warnings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slmscale.cli import main
from slmscale.errors import UserError
from slmscale.laws import plan
from slmscale.laws.chinchilla import ChinchillaParams
from slmscale.laws.compute_optimal import ComputeOptimal
from slmscale.paper import SPEECH_LAW, TABLE2_TOTAL
from slmscale.units import meta_path

LAW = ChinchillaParams.from_dict(SPEECH_LAW)
U_PAPER = TABLE2_TOTAL["hubert_tokens"]  # 10.89B HuBERT tokens (Table 2)


def dc_doc(samples=None, **extra):
    doc = {
        "law": "data_constrained",
        "params": dict(SPEECH_LAW),  # Table 4, R*_N 31, R*_D 25
        "compute_optimal": ComputeOptimal.from_params(LAW).as_dict(),
        **extra,
    }
    if samples is not None:
        doc["bootstrap"] = {"columns": list(plan.COLUMNS), "samples": samples}
    return doc


def eq7(N, D, U):
    P = np.array([[SPEECH_LAW[k] for k in plan.COLUMNS]])
    return float(plan.loss(P, [[N]], [[D]], U)[0, 0])


def test_data_aware_allocation_beats_eq6_under_eq7_at_1e22():
    a = plan.plan_for_compute(dc_doc(), 1e22, unique_tokens=U_PAPER)
    assert 6 * a["N_opt"] * a["D_opt"] == pytest.approx(1e22, rel=1e-12)
    eq6 = a["eq6"]
    # Eq. 6 asks for ~529B tokens, 48.6 passes over the paper's 10.89B (the numbers).
    assert eq6["D_opt"] == pytest.approx(529e9, rel=0.01)
    assert eq6["epochs"] == pytest.approx(48.6, rel=0.01)
    assert eq6["loss_eq4"] == pytest.approx(1.850, abs=5e-4)
    assert eq6["loss_eq7"] == pytest.approx(1.871, abs=5e-4)
    # The proposal is priced by the same law and is no worse than Eq. 6's allocation.
    assert a["loss"] == pytest.approx(eq7(a["N_opt"], a["D_opt"], U_PAPER), rel=1e-12)
    assert a["loss"] < eq6["loss_eq7"] and a["penalty"] > 0
    # Eq. 4 reaches Eq. 6's real (Eq. 7) loss at ~2.6e21: the compute it overstates.
    assert eq6["eq4_compute_for_that_loss"] == pytest.approx(2.6e21, rel=0.05)
    # No allocation on the line does better than the proposal (checked on a dense grid).
    Ns = np.geomspace(1e8, 1e12, 2001)
    P = np.array([[SPEECH_LAW[k] for k in plan.COLUMNS]])
    line = plan.loss(P, Ns[None, :], 1e22 / (6 * Ns[None, :]), U_PAPER)[0]
    assert a["loss"] <= line.min() + 1e-7


def test_scarce_data_moves_compute_from_epochs_to_parameters():
    # Under Table 4's constants the Eq. 7/8 optimum stays near Eq. 6's allocation (large R*:
    # repeats and excess parameters decay slowly); what changes a lot is the loss reached.
    a = plan.plan_for_compute(dc_doc(), 1e21, unique_tokens=1e9)
    assert a["epochs"] < a["eq6"]["epochs"] and a["N_opt"] > a["eq6"]["N_opt"]
    assert a["penalty"] > 1e-5
    assert a["eq6"]["loss_eq7"] - a["eq6"]["loss_eq4"] > 0.05  # Eq. 6 alone over-promises
    lo, hi = a["N_within_1e-3"]
    assert lo <= a["N_opt"] <= hi


def test_plenty_of_data_gives_the_eq6_answer():
    a = plan.plan_for_compute(dc_doc(), 1e20, unique_tokens=1e15)
    assert a["N_opt"] == pytest.approx(a["eq6"]["N_opt"], rel=0.01)
    assert a["penalty"] == pytest.approx(0.0, abs=1e-9)


def test_inverse_uses_the_same_law_and_knows_its_floor():
    doc = dc_doc()
    C, _ = plan.compute_for_loss(doc, 1.95, unique_tokens=U_PAPER)
    fwd = plan.plan_for_compute(doc, C, unique_tokens=U_PAPER)
    assert fwd["loss"] == pytest.approx(1.95, abs=1e-6)
    C6, _ = plan.compute_for_loss(doc, 1.95)  # no U_D: Eq. 6 / Eq. 4
    assert C6 <= C
    P = np.array([[SPEECH_LAW[k] for k in plan.COLUMNS]])
    floor = float(plan.loss_floor(P, U_PAPER)[0])
    assert SPEECH_LAW["E"] < floor < 1.87
    with pytest.raises(UserError, match="more unique data is needed"):
        plan.compute_for_loss(doc, floor - 1e-3, unique_tokens=U_PAPER)


def test_every_output_has_an_interval():
    rng = np.random.default_rng(0)
    base = np.array([SPEECH_LAW[k] for k in plan.COLUMNS])
    samples = (base * np.exp(rng.normal(0, 0.02, (200, 7)))).tolist()
    lines = {"sblimp_acc": [[-0.1, 0.8]] * 200}
    doc = dc_doc(
        samples,
        downstream={
            "sblimp_acc": {
                "linear": {
                    "slope": -0.1,
                    "intercept": 0.8,
                    "pearson_r": -0.99,
                    "loss_min": 1.8,
                    "loss_max": 3.0,
                    "n_points": 10,
                    "n_saturated": 0,
                    "plateau": None,
                }
            }
        },
    )
    doc["bootstrap"]["linear"] = lines
    a = plan.plan_for_compute(doc, 1e21, unique_tokens=U_PAPER, tokens_per_sec=1e5)
    for k in ("N_opt", "D_opt", "epochs", "loss", "penalty", "gpu_hours"):
        lo, hi = a["ci95"][k]
        assert lo <= hi, k
    for k in ("N_opt", "D_opt", "epochs", "loss"):
        lo, hi = a["ci95"][k]
        assert lo <= a[k] <= hi, k
    lo, hi = a["metrics"]["sblimp_acc"]["ci95"]
    assert lo < a["metrics"]["sblimp_acc"]["value"] < hi
    assert all(v is not None for v in a["eq6"]["ci95"]["loss_eq7"])
    _, ci = plan.compute_for_loss(doc, 2.0, unique_tokens=U_PAPER)
    assert ci[0] < ci[1]


def test_warns_outside_the_fitted_range_and_without_r_star():
    rng = {"flops": [1e17, 1e19], "params": [2e7, 8e8], "tokens": [4e7, 1e11]}
    a = plan.plan_for_compute(dc_doc(fitted_range=rng), 1e22, unique_tokens=U_PAPER)
    text = " ".join(a["warnings"])
    assert "C = 1e+22 is 3.0 orders of magnitude above" in text
    assert "N = " in text and "D = " in text
    doc = dc_doc()
    doc["law"] = "chinchilla"
    for k in ("R_star_N", "R_star_D"):
        del doc["params"][k]
    b = plan.plan_for_compute(doc, 1e22, unique_tokens=U_PAPER)
    assert "eq6" not in b and "has no R*" in b["warnings"][0] and "48.6 epochs" in b["warnings"][0]


def test_plan_cli_prints_both_allocations(tmp_path, capsys):
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(dc_doc(unique_tokens_available=U_PAPER)))
    assert main(["plan", "--fit", str(path), "--flops", "1e22"]) == 0
    out = capsys.readouterr().out
    assert "U_D = 1.089e+10" in out and "Eq. 6 (assumes unlimited unique data)" in out
    assert "loss, Eq. 7  1.871" in out and "penalty of ignoring the data limit" in out
    assert (
        main(["plan", "--fit", str(path), "--flops", "1e22", "--json", str(tmp_path / "a.json")])
        == 0
    )
    ans = json.loads((tmp_path / "a.json").read_text())
    assert ans["loss"] < ans["eq6"]["loss_eq7"]
    assert main(["plan", "--fit", str(path), "--flops", "1e22", "--unique-tokens", "-1"]) == 2
    assert main(["plan", "--fit", str(path), "--target-loss", "1.80"]) == 2
    assert "more unique data is needed" in capsys.readouterr().err


def test_unique_tokens_come_from_the_units_dataset(tmp_path, capsys):
    from slmscale.commands.fit import unique_tokens_of

    for name, n in (("a", 4e9), ("b", 6.89e9)):
        (tmp_path / name).mkdir()
        meta = {"counts": {"libri": {"train": {"units": n}, "test": {"units": 1e6}}}}
        meta_path(tmp_path / name).write_text(json.dumps(meta))
    a, b = tmp_path / "a", tmp_path / "b"
    assert unique_tokens_of({"units_dataset": [f"{a}@h1"] * 3}) == 4e9
    assert unique_tokens_of({"units_dataset": [f"{a}@h1;{b}@h2"]}) == pytest.approx(10.89e9)
    assert unique_tokens_of({"units_dataset": [f"{a}@h1", f"{b}@h2"]}) is None  # ambiguous
    assert unique_tokens_of({"units_dataset": [f"{tmp_path}/none@h"]}) is None
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(dc_doc()))
    assert main(["plan", "--fit", str(path), "--flops", "1e22", "--units", str(a)]) == 0
    assert "U_D = 4e+09" in capsys.readouterr().out
    assert main(["plan", "--fit", str(path), "--flops", "1e22", "--units", str(tmp_path)]) == 2
    assert "not a units dataset" in capsys.readouterr().err


def test_unreachable_metric_target_names_the_flag_the_user_typed(tmp_path, capsys):
    doc = dc_doc(
        downstream={
            "story_cloze_acc": {
                "linear": {
                    "slope": -0.01,
                    "intercept": 0.5,
                    "pearson_r": -0.4,
                    "loss_min": 1.8,
                    "loss_max": 3.0,
                    "n_points": 10,
                    "n_saturated": 0,
                    "plateau": None,
                }
            },
            "swuggy_acc": {"linear": None, "at_chance": True},
        }
    )
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(doc))
    assert main(["plan", "--fit", str(path), "--target", "story_cloze_acc=0.7"]) == 2
    err = capsys.readouterr().err
    assert "--target story_cloze_acc=0.7 (loss -20)" in err and "--target-loss" not in err
    assert main(["plan", "--fit", str(path), "--target", "swuggy_acc=0.7"]) == 2
    assert "never beat chance" in capsys.readouterr().err
