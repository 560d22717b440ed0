"""`slmscale status SPEC` and how reading commands find (and never create) a tracking store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slmscale import cli
from slmscale.errors import UserError
from slmscale.grid.plan import load_plan
from slmscale.tracking.schema import (
    KIND_TRAIN,
    M_TEST_LOSS_FINAL,
    TAG_FAILURE,
    TAG_KIND,
    TAG_TRIAL_KEY,
)
from slmscale.tracking.store import client, get_experiment_id, reading_tracking_uri

ROOT = Path(__file__).resolve().parents[1]
PAPER = str(ROOT / "tune_spaces" / "paper.yaml")
OVERRIDES = ["models=[20M]", "extra=[]"]


def _store_with_runs(db: Path, states: dict[str, str]) -> str:
    """A SQLite store with one train run per trial key, ended in the given MLflow status."""
    uri = f"sqlite:///{db}"
    c = client(uri)
    exp = c.create_experiment("paper")
    for i, (key, status) in enumerate(states.items()):
        run = c.create_run(exp, tags={TAG_KIND: KIND_TRAIN, TAG_TRIAL_KEY: key})
        if status == "FINISHED":
            c.log_metric(run.info.run_id, M_TEST_LOSS_FINAL, 3.5 - 0.1 * i, step=1)
        if status == "FAILED":
            c.set_tag(run.info.run_id, TAG_FAILURE, "non-finite loss at step 12")
        if status != "RUNNING":
            c.set_terminated(run.info.run_id, status)
    return uri


def test_status_counts_each_trial_by_the_state_of_its_run(tmp_path, capsys):
    keys = [t.key for t in load_plan(PAPER, OVERRIDES).trials]
    assert len(keys) == 7
    states = {keys[0]: "FINISHED", keys[1]: "FINISHED", keys[2]: "FAILED", keys[3]: "KILLED"}
    states[keys[4]] = "RUNNING"
    uri = _store_with_runs(tmp_path / "mlflow.db", states)
    out_json = tmp_path / "status.json"

    argv = ["status", PAPER, *OVERRIDES, "--tracking-uri", uri, "--json", str(out_json)]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith(
        "grid paper: 7 trials: 2 done, 1 running, 1 failed, 1 interrupted, 2 left"
    )
    assert "non-finite loss at step 12" in text
    assert "resume: rerun the same `slmscale grid` command" in text

    doc = json.loads(out_json.read_text())
    assert doc["counts"] == {"done": 2, "running": 1, "failed": 1, "killed": 1, "left": 2}
    by_key = {r["trial_key"]: r for r in doc["rows"]}
    assert by_key[keys[0]]["test_loss_final"] == pytest.approx(3.5)
    assert by_key[keys[6]]["state"] == "left" and by_key[keys[6]]["run_id"] is None
    assert 0 < doc["flops_done_fraction"] < 1


def test_status_without_overrides_sees_other_trial_keys(tmp_path, capsys):
    keys = [t.key for t in load_plan(PAPER, OVERRIDES).trials]
    uri = _store_with_runs(tmp_path / "mlflow.db", {keys[0]: "FINISHED"})
    assert cli.main(["status", PAPER, "--tracking-uri", uri, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["trials"] == 55 and doc["counts"]["done"] == 1  # the 20M trials keep their keys


def test_status_of_a_grid_never_run_says_so(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client(uri).create_experiment("other")
    assert cli.main(["status", PAPER, *OVERRIDES, "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert "7 left" in out and "the experiment does not exist" in out


def test_readers_find_the_nearest_store_and_never_create_one(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("SLMSCALE_HOME", raising=False)
    inside = tmp_path / "slmscale-demo" / "reports" / "demo"
    inside.mkdir(parents=True)

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="no MLflow store found"):
        reading_tracking_uri(None)
    assert not list(tmp_path.rglob("mlflow.db"))  # looking created nothing

    db = tmp_path / "slmscale-demo" / "mlflow.db"
    client(f"sqlite:///{db}").create_experiment("demo_quick")
    assert reading_tracking_uri(None) == f"sqlite:///{db}"  # the demo's store, from its parent
    monkeypatch.chdir(inside)
    assert reading_tracking_uri(None) == f"sqlite:///{db}"  # and from deep inside it
    assert reading_tracking_uri(f"sqlite:///{db}") == f"sqlite:///{db}"
    with pytest.raises(UserError, match="--tracking-uri: no MLflow store at /nowhere/x.db"):
        reading_tracking_uri("sqlite:////nowhere/x.db")
    assert reading_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_a_wrong_experiment_name_lists_the_ones_that_exist(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for name in ("demo", "demo_quick"):
        client(uri).create_experiment(name)
    with pytest.raises(UserError, match=r"experiments there: 'demo', 'demo_quick'"):
        get_experiment_id(uri, "demo-quick")


def test_the_cheap_checks_read_a_sqlite_store_without_mlflow(tmp_path):
    from slmscale.tracking.store import check_experiments, check_run, stored_experiments

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = client(uri)
    exp = c.create_experiment("demo")
    c.delete_experiment(c.create_experiment("gone"))
    run = c.create_run(exp).info.run_id
    assert stored_experiments(uri) == {"Default": "active", "demo": "active", "gone": "deleted"}
    check_experiments(uri, ["demo"])
    check_experiments(uri, ["new"], allow_missing=True)  # a grid creates it
    with pytest.raises(UserError, match=r"no MLflow experiment named 'demo-quick' .*: 'demo'\)"):
        check_experiments(uri, ["demo-quick"])
    with pytest.raises(UserError, match="'gone' is deleted"):
        check_experiments(uri, ["gone"], allow_missing=True)
    check_run(uri, run)
    with pytest.raises(UserError, match="run abc: not found"):
        check_run(uri, "abc")
    c.delete_run(run)
    with pytest.raises(UserError, match="deleted"):
        check_run(uri, run)
    # No store file, or a server: nothing to say cheaply (MLflow answers later).
    assert stored_experiments(f"sqlite:///{tmp_path / 'none.db'}") is None
    check_experiments("http://127.0.0.1:1", ["anything"])
