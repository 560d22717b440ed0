"""`slmscale fit` as a user meets it: fast one-line errors, the law it picks, what it excluded."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys

import pytest

from slmscale.cli import main
from slmscale.laws.chinchilla import ChinchillaParams
from slmscale.laws.synthetic import PAPER_EPOCHS, synthetic_runs
from slmscale.paper import SPEECH_LAW

LAW = ChinchillaParams.from_dict(SPEECH_LAW)
HEAVY = ("mlflow", "torch", "matplotlib", "ray")


def write_csv(path, cols):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(cols))
        w.writerows(zip(*cols.values(), strict=True))


def mini_store(path):
    """A SQLite file with MLflow's experiments table and one experiment, 'demo'."""
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE experiments (experiment_id INT, name TEXT, lifecycle_stage TEXT)")
    con.execute("INSERT INTO experiments VALUES (1, 'demo', 'active')")
    con.commit()
    con.close()
    return f"sqlite:///{path}"


@pytest.mark.parametrize(
    "cmd, message",
    [
        (["fit", "--experiment", "nosuch"], "no MLflow experiment named 'nosuch'"),
        (["report", "--experiment", "nosuch", "--out", "r"], "no MLflow experiment named 'nosuch'"),
        (["fit", "--runs", "missing.csv"], "missing.csv: runs table file not found"),
        (["plan", "--fit", "missing.json", "--flops", "1e20"], "missing.json: fit file not found"),
        (["design", "missing.yaml"], "missing.yaml: spec file not found"),
    ],
)
def test_mistakes_are_told_before_the_heavy_imports(tmp_path, cmd, message):
    uri = mini_store(tmp_path / "mlflow.db")
    if "--experiment" in cmd:
        cmd = [*cmd, "--tracking-uri", uri]
    code = (
        f"import sys; from slmscale.cli import main; rc = main({cmd!r}); "
        f"print(rc, sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert out.stdout.split("\n")[0] == "2 []", (out.stdout, out.stderr)  # exit 2, nothing heavy
    assert message in out.stderr and "Traceback" not in out.stderr


def test_multi_epoch_runs_pick_the_data_constrained_law_and_exclusions_have_reasons(
    tmp_path, capsys
):
    runs, _ = synthetic_runs(LAW, noise=0.003, seed=2, epochs=PAPER_EPOCHS)
    runs["loss"][3] = float("nan")
    write_csv(tmp_path / "runs.csv", runs)
    args = ["fit", "--runs", str(tmp_path / "runs.csv"), "--bootstrap", "0"]
    assert main([*args, "--json", str(tmp_path / "fit.json")]) == 0
    out = capsys.readouterr()
    doc = json.loads((tmp_path / "fit.json").read_text())
    assert doc["law"] == "data_constrained" and "40 multi-epoch runs" in doc["law_choice"]
    assert "law data_constrained: 40 multi-epoch runs" in out.err
    assert f"{runs['run_id'][3]}: loss missing or NaN" in out.out  # the reason, not a count
    assert main([*args, "--law", "chinchilla"]) == 0
    assert "multi-epoch run (unique_tokens < tokens)" in capsys.readouterr().out


def test_a_bound_on_the_box_edge_is_printed_as_a_bound():
    from slmscale.commands.fit import verdict_line

    v = {"identified": False, "edge": "hi", "interval": [3.5, 1e4], "interval_edge": "hi"}
    v["reason"] = "not identified: the estimate sits on the search box's upper end (a bound)"
    line = verdict_line("R_star_N", 1e4, v, None)
    assert ">= 1e+04 (edge)" in line and "1e+04 (edge)]" in line and "NOT IDENTIFIED" in line


def test_full_flops_need_the_full_count_and_say_which_was_used(tmp_path, capsys):
    runs, _ = synthetic_runs(LAW, noise=0.003, seed=3)
    write_csv(tmp_path / "runs.csv", runs)
    args = ["fit", "--runs", str(tmp_path / "runs.csv"), "--bootstrap", "0", "--flops", "full"]
    assert main(args) == 2
    assert "--flops full: 35 run(s) have no flops_full" in capsys.readouterr().err
    runs["flops_full"] = [
        6.0 * n * d * (1.0 + 2e7 / n) for n, d in zip(runs["params"], runs["tokens"], strict=True)
    ]
    write_csv(tmp_path / "runs.csv", runs)
    assert main([*args, "--json", str(tmp_path / "fit.json")]) == 0
    capsys.readouterr()
    doc = json.loads((tmp_path / "fit.json").read_text())
    assert doc["flops_definition"] == "full" and doc["envelope"]["flops_definition"] == "full"
    assert doc["flops_per_token"]["definition"] == "full" and doc["flops_per_token"]["p"] < 1.0
    ans = json.loads(
        subprocess.run(
            [sys.executable, "-m", "slmscale.cli", "plan", "--fit", str(tmp_path / "fit.json"),
             "--flops", "1e21", "--format", "json"],
            capture_output=True, text=True, check=True, timeout=600,
        ).stdout
    )  # fmt: skip
    k, p = doc["flops_per_token"]["k"], doc["flops_per_token"]["p"]
    assert ans["flops_definition"] == "full"
    assert k * ans["N_opt"] ** p * ans["D_opt"] == pytest.approx(1e21, rel=1e-9)  # the full count
    assert main(["plan", "--fit", str(tmp_path / "fit.json"), "--flops", "1e21", "--format",
                 "json", "--flops-definition", "6nd"]) == 0  # fmt: skip
    six = json.loads(capsys.readouterr().out)
    assert six["flops_definition"] == "6nd"
    assert 6.0 * six["N_opt"] * six["D_opt"] == pytest.approx(1e21, rel=1e-9)
