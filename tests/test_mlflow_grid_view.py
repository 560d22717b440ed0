"""The grid as the MLflow UI shows it: a parent run, nested trials, Source and Dataset filled in."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from slmscale.grid.dryrun import trial_rows
from slmscale.grid.plan import load_plan, make_jobs
from slmscale.grid.runner import start_run
from slmscale.tracking import client
from slmscale.tracking.grid_run import finish_grid_run, open_grid_run
from slmscale.tracking.schema import (
    ARTIFACT_GRID_SPEC,
    ARTIFACT_GRID_TRIALS,
    KIND_GRID,
    TAG_KIND,
    TAG_NOTE,
    TAG_PARENT_RUN,
    TAG_SOURCE_NAME,
)
from slmscale.train.synthetic import write_synthetic_units

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def grid(tmp_path, monkeypatch):
    write_synthetic_units(tmp_path / "units" / "smoke")
    shutil.copy(REPO / "tune_spaces" / "smoke.yaml", tmp_path / "smoke.yaml")
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = client(uri).create_experiment("smoke")
    plan = load_plan("smoke.yaml")
    return uri, exp, plan


def _open(uri, exp, plan, description="Two tiny models, for CI."):
    return open_grid_run(
        uri,
        exp,
        "smoke",
        spec_text="name: smoke\n",
        overrides=["seed=1"],
        trial_rows=trial_rows(plan.spec, plan.data, plan.trials),
        description=description,
    )


def test_one_parent_per_grid_with_the_spec_and_trial_table(grid):
    uri, exp, plan = grid
    parent = _open(uri, exp, plan)
    assert _open(uri, exp, plan) == parent  # a rerun finds the same parent
    c = client(uri)
    run = c.get_run(parent)
    assert run.data.tags[TAG_KIND] == KIND_GRID and run.info.run_name == "grid-smoke"
    assert run.data.params["n_trials"] == str(len(plan.trials)) == "5"
    assert run.data.params["overrides"] == "seed=1"
    assert run.data.tags[TAG_SOURCE_NAME] == "slmscale grid"
    local = Path(c.download_artifacts(parent, ARTIFACT_GRID_TRIALS))
    assert [r["trial_key"] for r in json.loads(local.read_text())] == [t.key for t in plan.trials]
    assert Path(c.download_artifacts(parent, ARTIFACT_GRID_SPEC)).read_text() == "name: smoke\n"
    note = c.get_experiment(exp).tags[TAG_NOTE]
    assert note.startswith("Two tiny models, for CI.") and "step = tokens seen" in note


def test_trials_nest_under_the_parent_and_name_their_data(grid):
    uri, exp, plan = grid
    parent = _open(uri, exp, plan)
    jobs = make_jobs(plan, uri, exp, "storage")
    job = replace(jobs[0], parent_run_id=parent)
    run = start_run(job)
    c = client(uri)
    got = c.get_run(run.run_id)
    assert got.data.tags[TAG_PARENT_RUN] == parent
    assert got.info.run_name == job.run_name and "-D" in job.run_name
    (inp,) = got.inputs.dataset_inputs
    assert inp.dataset.name == "smoke" and json.loads(inp.dataset.source)["uri"].endswith("smoke")
    assert inp.dataset.digest == plan.data.sources[0].digest[:36]
    assert [t.value for t in inp.tags] == ["training"]
    # A resumed run made before parents existed is adopted by the grid's parent.
    c.delete_tag(run.run_id, TAG_PARENT_RUN)
    start_run(job)
    assert c.get_run(run.run_id).data.tags[TAG_PARENT_RUN] == parent


def test_the_saved_view_lists_the_grids_trials_flat_with_rounded_values(grid):
    """MLflow's UI drops `runsExpanded` from a shared view and nests a run only under a loaded
    parent (fetching parents itself only when ordered by start time): filtering on the grid's
    trials and ordering by loss shows them unfolded (slmscale.tracking.grid_run)."""
    from slmscale.tracking.grid_run import RUN_NAME_COLUMN, grid_view_state
    from slmscale.tracking.schema import TAG_SHARED_VIEW_PREFIX

    uri, exp, plan = grid
    parent = _open(uri, exp, plan)
    tag = client(uri).get_experiment(exp).tags[TAG_SHARED_VIEW_PREFIX + "slmscale-grid-smoke"]
    state = json.loads(json.loads(tag)["state"])
    assert state == grid_view_state(parent)
    trials = f"tags.`mlflow.parentRunId` = '{parent}' and tags.`slmscale.kind` = 'train'"
    assert state["searchFilter"] == trials  # not the fit runs, which nest under the grid too
    assert state["orderByKey"] not in ("", "attributes.start_time")  # else parents are fetched
    assert "runsExpanded" not in state  # a shared view cannot carry it
    assert "tags.`test_loss_final`" in state["selectedColumns"]
    assert state["columnOrder"][0] == RUN_NAME_COLUMN and state["columnWidths"][RUN_NAME_COLUMN]


def test_a_finished_trial_carries_rounded_copies_and_integer_params_read_as_integers(grid):
    from slmscale.tracking.runs import finish_run, log_metrics

    uri, exp, plan = grid
    parent = _open(uri, exp, plan)
    job = make_jobs(plan, uri, exp, "storage")[0]
    run = start_run(replace(job, parent_run_id=parent))
    log_metrics(uri, run.run_id, {"test_loss_final": 1.473602890968, "sblimp_acc": 0.53333333}, 9)
    finish_run(uri, run.run_id)
    got = client(uri).get_run(run.run_id).data
    assert got.tags["test_loss_final"] == "1.4736" and got.tags["sblimp_acc"] == "0.533"
    assert got.metrics["test_loss_final"] == pytest.approx(1.473602890968)  # the value kept
    assert got.params["epochs"] == "1" and got.params["n_params"].isdigit()

    finish_grid_run(uri, parent, {"done": 1, "left": 4})
    local = client(uri).download_artifacts(parent, "grid/trials.csv")
    rows = list(csv.DictReader(open(local)))
    assert [r["trial"] for r in rows] == [job.run_name]
    assert rows[0]["test_loss_final"] == "1.4736" and rows[0]["state"] == "FINISHED"


@pytest.mark.parametrize(
    ("counts", "status"),
    [
        ({"done": 5}, "FINISHED"),
        ({"done": 3, "failed": 1, "left": 1}, "FAILED"),
        ({"done": 3, "killed": 2}, "KILLED"),
    ],
)
def test_the_parent_ends_in_a_status_that_agrees_with_its_trials(grid, counts, status):
    uri, exp, plan = grid
    parent = _open(uri, exp, plan)
    finish_grid_run(uri, parent, counts)
    run = client(uri).get_run(parent)
    assert run.info.status == status
    assert run.data.metrics["trials_done"] == counts["done"]


def test_train_runs_log_one_accuracy_per_benchmark_not_its_scoring_variants(grid):
    from slmscale.tracking.runs import TrialLogger, is_score_variant

    uri, exp, _plan = grid
    run = client(uri).create_run(exp)
    logger = TrialLogger(uri, run.info.run_id)
    logger.log(
        {
            "sblimp_acc": 0.61,
            "sblimp_acc_sum": 0.61,
            "sblimp_acc_mean": 0.58,
            "swuggy_acc_invocab": 0.7,
            "swuggy_acc_invocab_mean": 0.69,
            "test_loss": 3.2,
        },
        step=100,
    )
    logger.flush()
    logged = set(client(uri).get_run(run.info.run_id).data.metrics)
    assert logged == {"sblimp_acc", "swuggy_acc_invocab", "test_loss"}
    assert not is_score_variant("test_loss_final") and is_score_variant("story_cloze_acc_mean")
