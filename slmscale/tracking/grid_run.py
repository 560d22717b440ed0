"""The grid as MLflow shows it (edge): a parent run per grid, trials nested, sources and data named.

Why: opened in the MLflow UI, a grid used to be a flat list of look-alike runs beside the fits,
with empty Dataset and Source columns and no description.  MLflow's own convention for a sweep is
a parent run with nested children (the `mlflow.parentRunId` tag); the UI folds the children under
the parent, so this module gives every grid one:

- `open_grid_run`: the grid's parent run, found again by (grid name, kind=grid) on a rerun so a
  resumed grid keeps one parent; it holds the spec as run (overrides applied), the trial table
  (the dry-run rows), the number of trials, and the spec's description as its note;
- `trial_tags`: what every trial run carries besides its identity: the parent, and the Source
  (`slmscale grid` and the git commit of the code, when known);
- `log_units_inputs`: the units dataset(s) a trial trained on, as MLflow dataset inputs (the
  Dataset column), digest = the dataset's content hash;
- `finish_grid_run`: done / failed / left counts as metrics, and a status that agrees with them.

`mlflow` is imported inside functions only.
"""

from __future__ import annotations

import json
import subprocess
from functools import lru_cache
from pathlib import Path

from slmscale.tracking.runs import log_metrics
from slmscale.tracking.schema import (
    ARTIFACT_GRID_SPEC,
    ARTIFACT_GRID_TABLE,
    ARTIFACT_GRID_TRIALS,
    DATASET_CONTEXT_TAG,
    EXPERIMENT_KIND_TRAINING,
    KIND_GRID,
    KIND_TRAIN,
    M_GRID_DONE,
    M_GRID_FAILED,
    M_GRID_LEFT,
    M_TEST_LOSS_FINAL,
    PARAM_GRID_N_TRIALS,
    PARAM_GRID_OVERRIDES,
    ROUNDED_METRICS,
    TAG_EXPERIMENT_KIND,
    TAG_GRID,
    TAG_KIND,
    TAG_NOTE,
    TAG_PARENT_RUN,
    TAG_SHARED_VIEW_PREFIX,
    TAG_SOURCE_COMMIT,
    TAG_SOURCE_NAME,
    TAG_SOURCE_TYPE,
    TAG_VERSION,
)
from slmscale.tracking.store import client

#: Shown as the experiment's description when the spec gives none.
DEFAULT_NOTE = (
    "slmscale grid: one nested run per trial under the grid's parent run. Metric curves use "
    "step = tokens seen (the x axis of train_loss / test_loss is data, not optimizer steps)."
)


@lru_cache(maxsize=1)
def code_commit() -> str | None:
    """The git commit of the slmscale code running (None outside a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def source_tags(entry_point: str) -> dict[str, str]:
    tags = {TAG_SOURCE_NAME: entry_point, TAG_SOURCE_TYPE: "LOCAL"}
    commit = code_commit()
    if commit:
        tags[TAG_SOURCE_COMMIT] = commit
    return tags


def trial_tags(parent_run_id: str | None) -> dict[str, str]:
    """Tags every trial run carries: its grid's parent run and where the code came from."""
    tags = source_tags("slmscale grid")
    if parent_run_id:
        tags[TAG_PARENT_RUN] = parent_run_id
    return tags


#: The grid's columns: what a scaling study reads first (canonical MLflow UI column keys).
GRID_VIEW_PARAMS = ("model_size", "n_params", "tokens", "unique_tokens", "epochs")
#: MLflow's id of the run-name column, and a width that shows a whole trial name.
RUN_NAME_COLUMN = "attributes.`Run Name`"
RUN_NAME_WIDTH = 280
VALUE_WIDTH = 140  # a rounded value's column: room for its header (`topic_cloze_acc`)


def _column(kind: str, name: str) -> str:
    return f"{kind}.`{name}`"


def grid_view_id(grid_name: str) -> str:
    return f"slmscale-grid-{grid_name}"


def _trials_of(parent_run_id: str | None) -> str:
    """A search filter for the grid's trial runs (its fit runs nest under it too)."""
    kind = f"tags.`{TAG_KIND}` = '{KIND_TRAIN}'"
    return f"tags.`{TAG_PARENT_RUN}` = '{parent_run_id}' and {kind}" if parent_run_id else kind


def grid_view_state(parent_run_id: str | None) -> dict:
    """The runs-table state of the grid's saved view: every trial of the grid, one row each.

    What MLflow 3.17's UI does with a shared view (read from its bundle, `mlflow/server/js`):
    - It drops `runsExpanded` from a shared view, so a view cannot unfold a parent run.  But it
      nests a run under its parent only when the parent is among the loaded runs, and it fetches
      parents itself only when the table is ordered by start time.  So the view filters on the
      grid's trials (`tags.mlflow.parentRunId = <parent>`, kind train) and orders by final loss
      (worst, i.e. smallest compute, first): the trials are listed flat, none folded.
    - It formats metric cells only for its GenAI metrics; ours would show every float digit.  The
      view shows the rounded copies each trial run carries as tags (`ROUNDED_METRICS`).
    - It loads runs 100 at a time (a constant in the bundle; mlflow/mlflow#2183): a grid of more
      than 100 trials shows the rest after one "Load more".  The grid's parent run has the
      whole table, rounded, as `grid/trials.csv` (the UI shows it as a table).
    """
    columns = [_column("params", p) for p in GRID_VIEW_PARAMS]
    columns += [_column("tags", m) for m in ROUNDED_METRICS]
    return {
        "selectedColumns": columns,
        "columnOrder": [RUN_NAME_COLUMN, *columns],
        "columnWidths": {
            RUN_NAME_COLUMN: RUN_NAME_WIDTH,
            **{_column("tags", m): VALUE_WIDTH for m in ROUNDED_METRICS},
        },
        "runsHiddenMode": "SHOW_ALL",  # every trial in the charts too (default: the first 10)
        "viewMaximized": False,
        "runListHidden": False,
        "isAccordionReordered": False,
        "useGroupedValuesInCharts": True,
        "hideEmptyCharts": True,
        "groupBy": None,
        "groupsExpanded": {},
        "orderByKey": _column("metrics", M_TEST_LOSS_FINAL),
        "orderByAsc": False,
        "searchFilter": _trials_of(parent_run_id),
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
    }


def save_grid_view(
    tracking_uri: str, experiment_id: str, grid_name: str, parent_run_id: str | None
) -> str:
    """Store the grid's view as a shared view of the experiment; returns the view id."""
    import time

    view = grid_view_id(grid_name)
    now = int(time.time() * 1000)
    envelope = {
        "name": f"slmscale grid {grid_name}",
        "createdAt": now,
        "updatedAt": now,
        "state": json.dumps(grid_view_state(parent_run_id)),
    }
    client(tracking_uri).set_experiment_tag(
        experiment_id, TAG_SHARED_VIEW_PREFIX + view, json.dumps(envelope)
    )
    return view


def view_url(ui: str, experiment_id: str, view: str) -> str:
    """Where to open the grid's view, given the UI's address (e.g. http://127.0.0.1:5000)."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs?viewStateShareKey={view}"


def describe_experiment(tracking_uri: str, experiment_id: str, description: str) -> None:
    """Set the experiment's description (the spec's, else ours) unless the user wrote one."""
    c = client(tracking_uri)
    exp = c.get_experiment(experiment_id)
    if not exp.tags.get(TAG_EXPERIMENT_KIND):  # MLflow 3 opens unknown experiments as GenAI
        c.set_experiment_tag(experiment_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND_TRAINING)
    if exp.tags.get(TAG_NOTE):
        return
    text = f"{description.strip()}\n\n{DEFAULT_NOTE}" if description.strip() else DEFAULT_NOTE
    c.set_experiment_tag(experiment_id, TAG_NOTE, text)


def open_grid_run(
    tracking_uri: str,
    experiment_id: str,
    grid_name: str,
    *,
    spec_text: str,
    overrides: list[str],
    trial_rows: list[dict],
    description: str = "",
) -> str:
    """The grid's parent run id: found again for this grid (set back to RUNNING) or created."""
    from mlflow.entities import Param, RunTag

    from slmscale import __version__

    c = client(tracking_uri)
    found = c.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_KIND}` = '{KIND_GRID}' and tags.`{TAG_GRID}` = '{grid_name}'",
        max_results=5,
        order_by=["attributes.start_time ASC"],
    )
    if found:
        run_id = found[0].info.run_id
        c.update_run(run_id, status="RUNNING")
    else:
        tags = {TAG_KIND: KIND_GRID, TAG_GRID: grid_name, TAG_VERSION: __version__}
        tags.update(source_tags("slmscale grid"))
        if description.strip():
            tags[TAG_NOTE] = description.strip()
        run = c.create_run(experiment_id, run_name=f"grid-{grid_name}", tags=tags)
        run_id = run.info.run_id
        c.log_batch(
            run_id,
            params=[
                Param(PARAM_GRID_N_TRIALS, str(len(trial_rows))),
                Param(PARAM_GRID_OVERRIDES, " ".join(overrides)[:6000] or "(none)"),
            ],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
    c.log_text(run_id, spec_text, ARTIFACT_GRID_SPEC)
    c.log_text(run_id, json.dumps(trial_rows, indent=2), ARTIFACT_GRID_TRIALS)
    describe_experiment(tracking_uri, experiment_id, description)
    save_grid_view(tracking_uri, experiment_id, grid_name, run_id)
    return run_id


def finish_grid_run(tracking_uri: str, run_id: str, counts: dict[str, int]) -> None:
    """Counts as metrics; FINISHED when every trial is done, FAILED if any failed, else KILLED."""
    done, failed = counts.get("done", 0), counts.get("failed", 0)
    left = counts.get("left", 0) + counts.get("killed", 0) + counts.get("running", 0)
    log_metrics(
        tracking_uri, run_id, {M_GRID_DONE: done, M_GRID_FAILED: failed, M_GRID_LEFT: left}, 0
    )
    client(tracking_uri).log_text(
        run_id, trial_table_csv(tracking_uri, run_id), ARTIFACT_GRID_TABLE
    )
    status = "FAILED" if failed else "KILLED" if left else "FINISHED"
    client(tracking_uri).set_terminated(run_id, status=status)


#: The columns of the grid's trial table (grid/trials.csv): (header, where, decimals or None).
TABLE_COLUMNS = (
    ("trial", "name", None),
    ("size", "params.model_size", None),
    ("N", "params.n_params", None),
    ("D", "params.tokens", None),
    ("U_D", "params.unique_tokens", None),
    ("epochs", "params.epochs", None),
    ("state", "status", None),
    *((m, f"metrics.{m}", d) for m, d in ROUNDED_METRICS.items()),
)


def trial_table_csv(tracking_uri: str, parent_run_id: str) -> str:
    """Every trial of a grid as CSV, rounded, in size then data order (the parent's table)."""
    import csv
    import io

    c = client(tracking_uri)
    runs = c.search_runs(
        [c.get_run(parent_run_id).info.experiment_id],
        filter_string=f"tags.`{TAG_PARENT_RUN}` = '{parent_run_id}'",
        max_results=50_000,
    )

    def cell(run, where: str, decimals: int | None) -> str:
        if where == "name":
            return run.info.run_name
        if where == "status":
            return run.info.status
        kind, key = where.split(".", 1)
        if kind == "params":
            return run.data.params.get(key, "")
        value = run.data.metrics.get(key)
        return "" if value is None else f"{value:.{decimals}f}"

    def order(run) -> tuple:
        p = run.data.params
        return tuple(float(p.get(k) or "nan") for k in ("n_params", "tokens", "epochs"))

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([header for header, _, _ in TABLE_COLUMNS])
    for run in sorted(runs, key=order):
        writer.writerow([cell(run, where, d) for _, where, d in TABLE_COLUMNS])
    return out.getvalue()


def log_units_inputs(tracking_uri: str, run_id: str, sources: list[dict]) -> None:
    """The units datasets a run trained on, as MLflow dataset inputs (the Dataset column).

    `sources`: [{"path", "digest", "name" (optional), "profile" (optional dict)}].
    """
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = []
    for src in sources:
        path = str(src["path"])
        inputs.append(
            DatasetInput(
                dataset=Dataset(
                    name=src.get("name") or Path(path).name,
                    digest=str(src.get("digest") or "unknown")[:36],
                    source_type="local",
                    source=json.dumps({"uri": path}),
                    profile=json.dumps(src["profile"]) if src.get("profile") else None,
                ),
                tags=[InputTag(DATASET_CONTEXT_TAG, "training")],
            )
        )
    if inputs:
        client(tracking_uri).log_inputs(run_id, datasets=inputs)
