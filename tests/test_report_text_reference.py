"""Table 3 like for like: a user's text table, benchmarks at chance, and the report's wording."""

from __future__ import annotations

import csv
import json

import numpy as np

from slmscale.cli import main
from slmscale.laws.chinchilla import ChinchillaParams
from slmscale.laws.reference import load_reference, reference_envelopes
from slmscale.laws.study import run_study
from slmscale.laws.synthetic import synthetic_runs
from slmscale.laws.table import validate_runs
from slmscale.paper import SPEECH_LAW

LAW = ChinchillaParams.from_dict(SPEECH_LAW)


def write_csv(path, cols):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(cols))
        w.writerows(zip(*cols.values(), strict=True))


def text_table(path, gamma=0.05):
    """Three text models x 6 checkpoints whose error rate falls as C^-gamma (known answer)."""
    rows = {
        "model": [],
        "params_nonembedding": [],
        "tokens_seen": [],
        "blimp_acc": [],
        "story_cloze_acc": [],
    }
    for n in (1e8, 4e8, 1.6e9):
        for t in np.geomspace(1e9, 3e11, 6):
            C = 6 * n * t
            rows["model"].append(f"m{n:g}")
            rows["params_nonembedding"].append(n)
            rows["tokens_seen"].append(t)
            rows["blimp_acc"].append(1 - 0.5 * (C / 1e18) ** -gamma)
            rows["story_cloze_acc"].append(0.5 + 0.001 * (n > 1e9))  # never beats chance
    write_csv(path, rows)


def test_a_users_text_table_is_used_as_is_with_the_same_function(tmp_path):
    text_table(tmp_path / "text.csv")
    label, cols = load_reference(tmp_path / "text.csv")
    assert label == "text.csv" and len(cols["blimp_acc"]) == 18
    env = reference_envelopes(cols)
    assert env["sblimp_acc"]["n_groups"] == 3
    assert abs(env["sblimp_acc"]["gamma_q"]["error_rate"]["gamma"][0] - 0.05) < 1e-9
    assert env["story_cloze_acc"]["at_chance"]


def test_benchmark_at_chance_gets_no_exponent_and_the_report_says_so(tmp_path):
    runs, _ = synthetic_runs(LAW, noise=0.003, seed=2)
    rng = np.random.default_rng(0)
    runs["story_cloze_acc"] = (0.5 + rng.normal(0, 0.005, len(runs["loss"]))).tolist()
    write_csv(tmp_path / "runs.csv", runs)
    text_table(tmp_path / "text.csv")
    table, excluded = validate_runs(runs, "r")
    doc = run_study(table, excluded, source={"label": "r"}).doc
    assert doc["downstream"]["story_cloze_acc"]["at_chance"] is True
    assert doc["downstream"]["story_cloze_acc"]["gamma_q"] is None
    row = next(r for r in doc["table3"] if r["metric"] == "story_cloze_acc")
    assert row["speech_at_chance"] and row["gamma_speech_ours"] is None
    out = tmp_path / "rep"
    args = ["report", "--runs", str(tmp_path / "runs.csv"), "--bootstrap", "20"]
    args += ["--text-reference", str(tmp_path / "text.csv"), "--out", str(out)]
    assert main(args) == 0
    md = (out / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| story_cloze_acc | - |"))
    assert "| at chance" in row and "no exponent" in row
    assert "At chance (its best runs do not beat chance" in md and "Text reference: text.csv" in md
    fit = json.loads((out / "fit.json").read_text())
    assert fit["reference_label"] == "text.csv"
    assert fit["ci95"]["gamma_q_text_error.sblimp_acc"][0] <= 0.05 + 1e-9


def test_bad_text_reference_is_one_line(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("params_nonembedding,tokens_seen,blimp_acc\n1e8,-1,0.7\n")
    runs, _ = synthetic_runs(LAW, noise=0.003)
    write_csv(tmp_path / "runs.csv", runs)
    rc = main(
        [
            "fit",
            "--runs",
            str(tmp_path / "runs.csv"),
            "--bootstrap",
            "0",
            "--text-reference",
            str(tmp_path / "t.csv"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "row 2: tokens_seen is not a positive number" in err
    assert "Traceback" not in err
