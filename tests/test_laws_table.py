"""Bad input to the fitter: every path gives a specific message and lists the bad runs."""

from __future__ import annotations

import numpy as np
import pytest

from slmscale.errors import UserError
from slmscale.laws.chinchilla import ChinchillaParams
from slmscale.laws.study import run_study
from slmscale.laws.synthetic import synthetic_runs
from slmscale.laws.table import validate_runs
from slmscale.paper import SPEECH_LAW

LAW = ChinchillaParams.from_dict(SPEECH_LAW)


def runs(**kw):
    return synthetic_runs(LAW, noise=0.002, **kw)[0]


def test_missing_columns_name_what_is_missing():
    with pytest.raises(UserError, match=r"r\.csv: runs table lacks column\(s\) tokens, loss"):
        validate_runs({"params": [1.0], "N": [2.0]}, "r.csv")


def test_bad_runs_are_excluded_and_listed():
    cols = runs()
    n = len(cols["loss"])
    cols["loss"][0] = float("nan")
    cols["loss"][1] = None
    cols["params"][2] = "abc"
    cols["tokens"][3] = -5
    cols["status"] = ["FINISHED"] * n
    cols["status"][4] = "FAILED"
    cols["run_id"][6] = cols["run_id"][5]
    table, excluded = validate_runs(cols, "x")
    reasons = {e["run_id"]: e["reason"] for e in excluded}
    assert len(table) == n - 6 and len(excluded) == 6
    assert "loss missing or NaN" in reasons["run000"]
    assert "params (N)" in reasons["run002"] and "tokens (D)" in reasons["run003"]
    assert reasons["run004"] == "status FAILED (not finished)"
    assert [e["reason"] for e in excluded if e["run_id"] == "run005"] == ["duplicate run_id"]
    # Sorted by (N, D): the order of the input does not matter.
    assert np.all(np.diff(table.N) >= 0)


def test_input_order_does_not_change_the_table():
    cols = runs()
    rev = {k: list(reversed(v)) for k, v in cols.items()}
    a, _ = validate_runs(cols, "a")
    b, _ = validate_runs(rev, "b")
    assert a.run_id == b.run_id and np.array_equal(a.loss, b.loss)


def test_nothing_left_to_fit_is_a_user_error():
    cols = runs(sizes=(20.4e6, 84.9e6), ratios=(2, 4))
    cols["loss"][0] = float("nan")
    table, excluded = validate_runs(cols, "few.csv")
    with pytest.raises(UserError, match=r"few\.csv: 3 single-epoch run\(s\) left.*5 param.*1 run"):
        run_study(table, excluded, source={"label": "few.csv"})


def test_single_model_size_is_a_user_error():
    table, excluded = validate_runs(runs(sizes=(84.9e6,)), "one.csv")
    with pytest.raises(UserError, match=r"one model size \(N=8\.49e\+07\)"):
        run_study(table, excluded, source={"label": "one.csv"})


def test_data_constrained_needs_multi_epoch_runs():
    table, excluded = validate_runs(runs(), "s.csv")
    with pytest.raises(UserError, match="needs >= 3 multi-epoch runs"):
        run_study(table, excluded, source={"label": "s.csv"}, law="data_constrained")


def test_missing_metrics_are_listed_per_metric():
    cols = runs()
    cols["sblimp_acc"][3] = None
    table, excluded = validate_runs(cols, "m.csv")
    doc = run_study(table, excluded, source={"label": "m.csv"}).doc
    assert doc["runs_missing_metrics"] == {"sblimp_acc": ["run003"]}
    assert (
        doc["downstream"]["sblimp_acc"]["linear"]["n_points"]
        + doc["downstream"]["sblimp_acc"]["linear"]["n_saturated"]
        == len(table) - 1
    )


def test_mixed_tokenizers_fit_the_main_one_and_compare_the_others():
    a = runs()
    b = synthetic_runs(
        ChinchillaParams.from_dict({"E": 1.42, "A": 3.85, "B": 8.9, "alpha": 0.15, "beta": 0.16}),
        noise=0.002,
        tokenizer="unigram5000",
        prefix="uni",
        sizes=(20.4e6, 84.9e6, 154.2e6),
    )[0]
    cols = {k: a[k] + b[k] for k in a}
    table, excluded = validate_runs(cols, "mix.csv")
    doc = run_study(table, excluded, source={"label": "mix.csv"}).doc
    assert doc["tokenizer"] == "hubert25hz-k500" and doc["n_points"] == 35
    assert sum("tokenizer unigram5000" in e["reason"] for e in doc["excluded"]) == 21
    assert set(doc["tokenizers"]) == {"hubert25hz-k500", "unigram5000"}
    assert doc["tokenizers"]["unigram5000"]["n_runs"] == 21
    with pytest.raises(UserError, match="no runs with tokenizer 'bpe'"):
        run_study(table, excluded, source={"label": "mix.csv"}, tokenizer="bpe")


def test_laws_are_pure_core():
    import subprocess
    import sys

    code = (
        "import sys, slmscale.laws.study, slmscale.laws.plan; "
        "print(sorted(m for m in ('mlflow', 'ray', 'matplotlib', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
