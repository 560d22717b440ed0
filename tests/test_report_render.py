"""`slmscale report` / `slmscale fit` on a tiny synthetic runs file: figures, documents, exit codes."""

from __future__ import annotations

import csv
import json

import pytest

from slmscale.cli import main
from slmscale.laws.chinchilla import ChinchillaParams
from slmscale.laws.synthetic import synthetic_runs
from slmscale.paper import SPEECH_LAW, UNIGRAM_LAW

FIGS = (
    "fig1_loss_envelope",
    "fig2_downstream_envelope",
    "fig3_law_fit",
    "fig4_loss_vs_metric",
    "fig5_tokenizer_envelopes",  # two tokenizers: Figure 5 sets them side by side
    "fig_residuals",
    "fig_rstar_profile",
)


def write_csv(path, cols):
    keys = list(cols)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        w.writerows(zip(*(cols[k] for k in keys), strict=True))


@pytest.fixture()
def inputs(tmp_path):
    sizes = (20.4e6, 84.9e6, 154.2e6)
    runs, curves = synthetic_runs(
        ChinchillaParams.from_dict(SPEECH_LAW),
        sizes=sizes,
        ratios=(2, 8, 32),
        epochs=(2, 8),
        multi_ratios=(16,),
        noise=0.003,
    )
    uni, ucurves = synthetic_runs(
        ChinchillaParams.from_dict(UNIGRAM_LAW),
        sizes=sizes,
        ratios=(2, 8, 32),
        noise=0.003,
        tokenizer="unigram5000",
        prefix="uni",
        seed=1,
    )
    write_csv(tmp_path / "runs.csv", {k: runs[k] + uni[k] for k in runs})
    write_csv(tmp_path / "curves.csv", {k: curves[k] + ucurves[k] for k in curves})
    return tmp_path


def test_report_renders_every_figure(inputs, capsys):
    out = inputs / "rep"
    rc = main(
        [
            "report",
            "--runs",
            str(inputs / "runs.csv"),
            "--curves",
            str(inputs / "curves.csv"),
            "--law",
            "data_constrained",
            "--bootstrap",
            "12",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    for name in FIGS:
        assert (out / f"{name}.png").stat().st_size > 1000
        assert (out / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert md.count("](fig") == len(FIGS)
    assert html.count('src="data:image/png;base64,') == len(FIGS) and "](fig" not in html
    assert "paper: speech | 1.73 | 13.9 | 39.8" in md  # Table 4, the paper's row beside ours
    assert "sblimp_acc | " in md and "Leave-largest-size-out: refit without N = 1.542e8" in md
    doc = json.loads((out / "fit.json").read_text())
    assert doc["law"] == "data_constrained" and set(doc["params"]) == {
        "E",
        "A",
        "B",
        "alpha",
        "beta",
        "R_star_N",
        "R_star_D",
    }
    assert doc["n_points"] == 9 + 6 and len(doc["bootstrap"]["samples"]) == 12
    # Table 3 states its definition and shows raw and error-rate exponents with intervals.
    assert "Definition (one function for speech and text)" in md
    assert "| sblimp_acc | raw accuracy | " in md and "| sblimp_acc | error rate | " in md
    row = next(line for line in md.splitlines() if line.startswith("| sblimp_acc | raw accuracy"))
    assert row.count("[") >= 3  # speech, text and ratio each with an interval
    assert "What R^2 can and cannot tell" in md and md.splitlines()[2].startswith("Caveats:")
    assert doc["envelope"]["basis"] == "eval points of single-epoch runs"
    assert doc["envelope"]["n_points"] == 9 * 10
    assert set(doc["tokenizers"]) == {"hubert25hz-k500", "unigram5000"}


def test_fit_json_is_byte_identical_on_rerun(inputs):
    args = ["fit", "--runs", str(inputs / "runs.csv"), "--bootstrap", "6", "--law", "chinchilla"]
    assert main([*args, "--json", str(inputs / "a.json")]) == 0
    assert main([*args, "--json", str(inputs / "b.json")]) == 0
    a, b = (inputs / "a.json").read_bytes(), (inputs / "b.json").read_bytes()
    assert a == b
    doc = json.loads(a)
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
    } <= set(doc)
    assert doc["huber_delta"] == 0.03 and doc["source"]["kind"] == "file"
    # 6 multi-epoch runs (chinchilla only) + 9 unigram runs (other tokenizer) are listed.
    assert len(doc["excluded"]) == 15


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("params,loss\n1,2\n", "lacks column(s) tokens"),
        ("params,tokens,loss\n1e7,1e9,nan\n2e7,2e9,nan\n", "0 single-epoch run(s) left"),
        (
            "params,tokens,loss\n1e7,1e9,3\n1e7,2e9,2.9\n1e7,4e9,2.8\n1e7,8e9,2.7\n1e7,9e9,2.6\n",
            "one model size",
        ),
        ("", "cannot read runs table"),
    ],
)
def test_bad_runs_files_exit_2_with_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert main(["fit", "--runs", str(path), "--bootstrap", "0"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_file_and_bad_flags_exit_2(tmp_path, capsys):
    assert main(["fit", "--runs", str(tmp_path / "nope.csv")]) == 2
    assert "runs table file not found" in capsys.readouterr().err
    (tmp_path / "r.csv").write_text("params,tokens,loss\n1,2,3\n")
    assert main(["fit", "--runs", str(tmp_path / "r.csv"), "--filter", "x"]) == 2
    assert (
        main(
            [
                "report",
                "--runs",
                str(tmp_path / "r.csv"),
                "--curves",
                str(tmp_path / "r.csv"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "curves need columns run_id, test_loss" in capsys.readouterr().err
