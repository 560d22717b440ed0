"""Fit runs (edge): read runs and eval-point curves for the fitter, log a fit run back.

A fit run is an MLflow run tagged `slmscale.kind=fit` in the (first) source experiment.  Its
params name the source experiments and the filter; its artifacts (under `fit/`) hold fit.json,
the figures and the report, and `run_ids.json`, the list of run ids the fit used, so a fit can
always be rerun from the store.  `mlflow` is imported lazily (through `store`).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from slmscale.tracking.schema import (
    ARTIFACT_FIT_DIR,
    ARTIFACT_FIT_JSON,
    ARTIFACT_FIT_RUN_IDS,
    KIND_FIT,
    M_TEST_LOSS,
    PARAM_FIT_BOOTSTRAP,
    PARAM_FIT_FILTER,
    PARAM_FIT_HUBER_DELTA,
    PARAM_FIT_LAW,
    PARAM_FIT_N_RUNS_USED,
    PARAM_FIT_SOURCE_EXPERIMENTS,
    TAG_KIND,
    TAG_VERSION,
)
from slmscale.tracking.store import client, get_experiment_id, metric_history, runs_table


def read_runs(tracking_uri: str, experiments: list[str], filter_string: str = "") -> dict:
    """The runs table of the experiments as a mapping column -> list (see `store.runs_table`)."""
    df = runs_table(tracking_uri, experiments, filter_string)
    return {c: df[c].tolist() for c in df.columns}


def read_curves(tracking_uri: str, runs: dict, single_epoch_only: bool = True) -> dict:
    """Long-format curves (run_id, tokens, flops, test_loss) of the given runs' `test_loss`.

    step = tokens seen (DESIGN.md), so flops = 6 N x step; multi-epoch runs are skipped by
    default (the loss envelope of Figure 1 is over single-epoch runs).
    """
    out: dict[str, list] = {"run_id": [], "tokens": [], "flops": [], M_TEST_LOSS: []}
    rows = zip(runs["run_id"], runs["params"], runs["tokens"], runs["unique_tokens"], strict=True)
    for run_id, n, d, u in sorted(rows, key=lambda r: str(r[0])):
        multi = u == u and d == d and u < d  # u == u: not NaN
        if (single_epoch_only and multi) or n != n:
            continue
        for step, value in metric_history(tracking_uri, run_id, M_TEST_LOSS):
            out["run_id"].append(run_id)
            out["tokens"].append(float(step))
            out["flops"].append(6.0 * float(n) * float(step))
            out[M_TEST_LOSS].append(float(value))
    return out


def log_fit_run(
    tracking_uri: str,
    experiments: list[str],
    filter_string: str,
    doc: dict,
    artifacts_dir: str | Path | None = None,
    fit_json: bytes | None = None,
) -> str:
    """Create a FINISHED fit run holding fit.json (+ the report directory); returns its id."""
    from mlflow.entities import Param, RunTag

    from slmscale import __version__

    c = client(tracking_uri)
    exp_id = get_experiment_id(tracking_uri, experiments[0])
    tags = {TAG_KIND: KIND_FIT, TAG_VERSION: __version__}
    run = c.create_run(exp_id, run_name=f"fit-{doc['law']}", tags=tags)
    run_id = run.info.run_id
    params = {
        PARAM_FIT_SOURCE_EXPERIMENTS: ",".join(experiments),
        PARAM_FIT_FILTER: filter_string or "",
        PARAM_FIT_LAW: doc["law"],
        PARAM_FIT_HUBER_DELTA: doc["huber_delta"],
        PARAM_FIT_BOOTSTRAP: doc.get("bootstrap", {}).get("n", 0),
        PARAM_FIT_N_RUNS_USED: len(_used_run_ids(doc)),
    }
    c.log_batch(
        run_id,
        params=[Param(k, str(v)) for k, v in params.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / ARTIFACT_FIT_RUN_IDS).write_text(json.dumps(_used_run_ids(doc), indent=1))
        if fit_json is not None:
            (Path(tmp) / ARTIFACT_FIT_JSON).write_bytes(fit_json)
        c.log_artifacts(run_id, tmp, ARTIFACT_FIT_DIR)
    if artifacts_dir is not None:
        c.log_artifacts(run_id, str(artifacts_dir), ARTIFACT_FIT_DIR)
    c.set_terminated(run_id, status="FINISHED")
    return run_id


def _used_run_ids(doc: dict) -> list[str]:
    used = list(doc.get("runs_used", []))
    used += doc.get("data_constrained", {}).get("runs_used", [])
    return sorted(set(used))
