"""`slmscale report --compare`: Figures 3 and 5 for experiments made outside the demo.

Three experiments are written into a fresh SQLite MLflow store with the tracking API, as the
grid logs train runs (no training): the main study, the same tokenizer on another corpus (three
sizes at one of the main grid's budgets, accuracies chosen so the answer is known) and another
tokenizer (a law of its own).  The report must draw both figures and print the numbers the runs
hold: the accuracies, their Wilson intervals over the items each run scored, which corpus is
ahead beyond those intervals, and the other tokenizer's Eq. 4 as `slmscale fit` gives it.
"""

from __future__ import annotations

import json
import math

import pytest

from slmscale.cli import main
from slmscale.laws.chinchilla import ChinchillaParams
from slmscale.laws.synthetic import synthetic_runs
from slmscale.paper import SPEECH_LAW, UNIGRAM_LAW
from slmscale.tracking import schema

SIZES = (20.4e6, 84.9e6, 154.2e6)
RATIOS = (2, 8, 32)
BUDGET = 8  # D/N of the data ablation's runs (one of the main grid's)
ITEMS = 200
# TopicCloze at the three sizes: main far ahead at two, within item noise at the third.
MAIN_TOPIC = (0.80, 0.85, 0.70)
BOOK_TOPIC = (0.50, 0.55, 0.66)


def log_runs(uri: str, experiment: str, runs: dict, curves: dict | None, items: dict) -> None:
    """Train runs as the grid logs them: params, final metrics, test-loss curve, eval details."""
    from mlflow.entities import Metric, Param

    from slmscale.tracking.store import client, get_or_create_experiment

    c = client(uri)
    exp = get_or_create_experiment(uri, experiment)
    metric_names = [m for m in schema.DOWNSTREAM_METRICS if m in runs]
    for i, rid in enumerate(runs["run_id"]):
        run = c.create_run(exp, tags={schema.TAG_KIND: schema.KIND_TRAIN}, run_name=rid)
        params = {
            "n_params": runs["params"][i],
            "tokens": runs["tokens"][i],
            "unique_tokens": runs["unique_tokens"][i],
            "epochs": 1,
            "tokenizer": runs["tokenizer"][i],
            "model_size": f"s{int(runs['params'][i] / 1e6)}M",
            "units_dataset": f"units/{experiment}@0123",
        }
        metrics = [Metric(schema.M_TEST_LOSS_FINAL, runs["loss"][i], 0, 0)]
        metrics += [Metric(m, runs[m][i], 0, 0) for m in metric_names]
        for j, r in enumerate((curves or {}).get("run_id", [])):
            if r == rid:
                step = int(curves["tokens"][j])
                metrics.append(Metric(schema.M_TEST_LOSS, curves["test_loss"][j], 0, step))
        c.log_batch(
            run.info.run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()]
        )
        details = {b: {"items_scored": items[m]} for b, m in schema.BENCHMARK_METRICS.items()}
        c.log_dict(run.info.run_id, details, schema.ARTIFACT_EVAL_DETAILS)
        c.set_terminated(run.info.run_id, status="FINISHED")


def wilson(p: float, n: int) -> tuple[float, float]:
    z = 1.959963984540054
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.fixture()
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    law = ChinchillaParams.from_dict(SPEECH_LAW)
    main_runs, curves = synthetic_runs(law, sizes=SIZES, ratios=RATIOS, noise=0.003)
    main_runs["topic_cloze_acc"] = [0.6] * len(main_runs["loss"])
    main_runs["story_cloze_acc"] = [0.5] * len(main_runs["loss"])  # at chance everywhere
    at_budget = [i for i, (n, d) in enumerate(zip(main_runs["params"], main_runs["tokens"],
                                                  strict=True)) if d == BUDGET * n]  # fmt: skip
    for i, acc in zip(at_budget, MAIN_TOPIC, strict=True):
        main_runs["topic_cloze_acc"][i] = acc
    log_runs(uri, "main", main_runs, curves, {m: ITEMS for m in schema.DOWNSTREAM_METRICS})

    book = {k: [v[i] for i in at_budget] for k, v in main_runs.items()}
    book["run_id"] = ["book0", "book1", "book2"]
    book["loss"] = [x * 1.1 for x in book["loss"]]
    book["topic_cloze_acc"] = list(BOOK_TOPIC)
    log_runs(uri, "book", book, None, {m: ITEMS for m in schema.DOWNSTREAM_METRICS})

    uni, ucurves = synthetic_runs(
        ChinchillaParams.from_dict(UNIGRAM_LAW), sizes=SIZES, ratios=RATIOS, noise=0.003,
        tokenizer="unigram5000", prefix="uni", seed=1,
    )  # fmt: skip
    log_runs(uri, "uni", uni, ucurves, {m: ITEMS for m in schema.DOWNSTREAM_METRICS})
    return uri, tmp_path


@pytest.mark.slow
def test_compare_draws_figures_3_and_5_with_the_runs_numbers(store):
    uri, tmp = store
    out = tmp / "rep"
    args = ["report", "--experiment", "main", "--compare", "book", "uni"]
    args += ["--tracking-uri", uri, "--bootstrap", "20", "--out", str(out)]
    assert main(args) == 0
    for fig in ("fig3_data_ablation", "fig5_tokenizer_envelopes"):
        assert (out / f"{fig}.png").stat().st_size > 5000
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert "(fig3_data_ablation.png)" in md and "(fig5_tokenizer_envelopes.png)" in md
    assert html.count('src="data:image/png;base64,') == md.count("](fig")

    comp = json.loads((out / "comparison.json").read_text())
    assert comp["data_ablation"]["arms"] == ["main", "book"]
    rows = comp["data_ablation"]["rows"]
    assert len(rows) == 6  # 3 sizes x 2 corpora, at the one shared budget
    for arm, accs in (("main", MAIN_TOPIC), ("book", BOOK_TOPIC)):
        got = sorted((r for r in rows if r["arm"] == arm), key=lambda r: r["params"])
        assert [r["tokens"] / r["params"] for r in got] == pytest.approx([BUDGET] * 3)
        for r, acc in zip(got, accs, strict=True):
            m = r["metrics"]["topic_cloze_acc"]
            assert m["acc"] == pytest.approx(acc) and m["n_items"] == ITEMS
            assert m["ci95"] == pytest.approx(wilson(acc, ITEMS), abs=1e-4)
            cell = f"{acc:.3g} [{m['ci95'][0]:.3g}, {m['ci95'][1]:.3g}] ({ITEMS} items)"
            assert cell in md
    claims = comp["data_ablation"]["claims"]
    assert claims["topic_cloze_acc"] == (
        "main ahead of book at 3 of 3 sizes (2 beyond both 95% binomial intervals)"
    )
    assert claims["story_cloze_acc"].startswith("at chance in main")
    assert "ahead" not in claims["story_cloze_acc"]

    # Figure 5: each tokenizer's Eq. 4 as `slmscale fit` gives it on that experiment alone
    uni_doc = json.loads((out / "fit-uni.json").read_text())
    assert main(["fit", "--experiment", "uni", "--tracking-uri", uri, "--bootstrap", "20",
                 "--json", str(tmp / "uni.json")]) == 0  # fmt: skip
    alone = json.loads((tmp / "uni.json").read_text())
    assert uni_doc["params"] == alone["params"] and uni_doc["ci95"]["E"] == alone["ci95"]["E"]
    assert abs(uni_doc["params"]["E"] - UNIGRAM_LAW["E"]) < 0.1 * UNIGRAM_LAW["E"]
    row = next(line for line in md.splitlines() if line.startswith("| unigram5000 | uni | 9 |"))
    assert f"{uni_doc['params']['E']:.4g} " in row and "[" in row  # with its interval
    assert comp["tokenizer_ablation"]["arms"] == ["main", "uni"]
    assert "| ours, tokenizer unigram5000 |" in md  # Table 4 gets the row


def test_compare_needs_an_experiment(tmp_path, capsys):
    (tmp_path / "r.csv").write_text("params,tokens,loss\n1,2,3\n")
    rc = main(["report", "--runs", str(tmp_path / "r.csv"), "--compare", "x", "--out",
               str(tmp_path / "o")])  # fmt: skip
    assert rc == 2 and "name MLflow experiments" in capsys.readouterr().err
