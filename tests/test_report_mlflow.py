"""`slmscale fit/report --experiment`: runs and curves read from MLflow, a fit run logged back."""

from __future__ import annotations

import json

import pytest

from slmscale.cli import main
from slmscale.laws.chinchilla import ChinchillaParams
from slmscale.laws.synthetic import synthetic_runs
from slmscale.paper import SPEECH_LAW
from slmscale.tracking import schema


def make_store(uri: str) -> list[str]:
    """Train runs as the grid stage logs them (DESIGN.md "MLflow run schema")."""
    from mlflow.entities import Metric, Param

    from slmscale.tracking.store import client, get_or_create_experiment

    runs, curves = synthetic_runs(
        ChinchillaParams.from_dict(SPEECH_LAW),
        sizes=(20.4e6, 84.9e6, 154.2e6),
        ratios=(2, 8, 32),
        noise=0.003,
    )
    c = client(uri)
    exp = get_or_create_experiment(uri, "study")
    ids = []
    for i, rid in enumerate(runs["run_id"]):
        run = c.create_run(exp, tags={schema.TAG_KIND: schema.KIND_TRAIN})
        run_id = run.info.run_id
        params = {
            "n_params": runs["params"][i],
            "tokens": runs["tokens"][i],
            "unique_tokens": runs["unique_tokens"][i],
            "tokenizer": runs["tokenizer"][i],
            "model_size": "x",
        }
        pts = [j for j, r in enumerate(curves["run_id"]) if r == rid]
        metrics = [
            Metric(schema.M_TEST_LOSS, curves["test_loss"][j], 0, int(curves["tokens"][j]))
            for j in pts
        ]
        metrics += [
            Metric(schema.M_TEST_LOSS_FINAL, runs["loss"][i], 0, 0),
            Metric("sblimp_acc", runs["sblimp_acc"][i], 0, 0),
        ]
        c.log_batch(run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()])
        c.set_terminated(run_id, status="FAILED" if i == 0 else "FINISHED")
        ids.append(run_id)
    return ids


@pytest.mark.slow
def test_report_from_mlflow_logs_a_fit_run(tmp_path):
    from slmscale.tracking.store import client, get_experiment_id

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ids = make_store(uri)
    args = ["--experiment", "study", "--tracking-uri", uri, "--bootstrap", "4"]
    assert main(["report", *args, "--out", str(tmp_path / "rep")]) == 0
    assert main(["fit", *args, "--json", str(tmp_path / "again.json")]) == 0
    first = (tmp_path / "rep" / "fit.json").read_bytes()
    assert first == (tmp_path / "again.json").read_bytes()  # the fit run did not leak in
    doc = json.loads(first)
    assert doc["excluded"] == [{"run_id": ids[0], "reason": "status FAILED (not finished)"}]
    assert doc["n_points"] == 8 and sorted(doc["runs_used"]) == sorted(ids[1:])
    assert doc["envelope"]["n_points"] == 8 * 10  # every eval point of the finished runs
    c = client(uri)
    fits = c.search_runs(
        [get_experiment_id(uri, "study")],
        filter_string=f"tags.`{schema.TAG_KIND}` = '{schema.KIND_FIT}'",
    )
    assert len(fits) == 1  # the same fit again (report, then fit) updates its run
    fit_run = fits[0]
    m = fit_run.data.metrics
    assert {"E", "A", "B", "alpha", "beta", "a", "b", "r2"} <= set(m)  # fits compare in the table
    assert m["E"] == pytest.approx(doc["params"]["E"])
    lo, hi = doc["ci95"]["alpha"]  # an interval is logged when the bootstrap gave one
    assert ("alpha.ci95_lo" in m) == (lo is not None)
    if lo is not None:
        assert (m["alpha.ci95_lo"], m["alpha.ci95_hi"]) == pytest.approx((lo, hi))
    assert fit_run.data.params[schema.PARAM_FIT_SOURCE_EXPERIMENTS] == "study"
    assert fit_run.data.params[schema.PARAM_FIT_N_RUNS_USED] == "8"
    files = {a.path for a in c.list_artifacts(fit_run.info.run_id, schema.ARTIFACT_FIT_DIR)}
    assert {"fit/fit.json", "fit/run_ids.json", "fit/report.html"} <= files
    local = c.download_artifacts(fit_run.info.run_id, "fit/run_ids.json", str(tmp_path))
    assert json.loads(open(local).read()) == sorted(ids[1:])


@pytest.mark.slow
def test_fit_run_nests_under_the_grid_it_fitted_and_states_its_verdicts(tmp_path):
    """Two grids in one experiment, the fitted runs in the older one: the fit nests there (not
    under the newest grid), that grid's parent shows the headline numbers, and the fit run's
    metrics carry fit.json's verdicts."""
    from slmscale.tracking.store import client, get_experiment_id

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ids = make_store(uri)
    c = client(uri)
    exp = get_experiment_id(uri, "study")
    grid = {schema.TAG_KIND: schema.KIND_GRID}
    fitted = c.create_run(exp, run_name="grid-main", tags={**grid, schema.TAG_GRID: "main"})
    for rid in ids:
        c.set_tag(rid, schema.TAG_PARENT_RUN, fitted.info.run_id)
    newer = c.create_run(exp, run_name="grid-other", tags={**grid, schema.TAG_GRID: "other"})
    out = tmp_path / "fit.json"
    args = ["fit", "--experiment", "study", "--tracking-uri", uri, "--bootstrap", "20"]
    assert main([*args, "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    (fit_run,) = c.search_runs(
        [exp], filter_string=f"tags.`{schema.TAG_KIND}` = '{schema.KIND_FIT}'"
    )
    assert fit_run.data.tags[schema.TAG_PARENT_RUN] == fitted.info.run_id
    assert c.get_run(fitted.info.run_id).data.metrics["fit.E"] == pytest.approx(doc["params"]["E"])
    assert "fit.E" not in c.get_run(newer.info.run_id).data.metrics
    m = fit_run.data.metrics
    for k, v in doc["verdicts"].items():
        assert m[f"{k}.identified"] == float(v["identified"]), k
