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
    KIND_GRID,
    M_TEST_LOSS,
    PARAM_FIT_BOOTSTRAP,
    PARAM_FIT_FILTER,
    PARAM_FIT_HUBER_DELTA,
    PARAM_FIT_LAW,
    PARAM_FIT_N_RUNS_USED,
    PARAM_FIT_SOURCE_EXPERIMENTS,
    TAG_FIT_KEY,
    TAG_KIND,
    TAG_PARENT_RUN,
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
    key = fit_key(experiments, filter_string, doc)
    tags = {TAG_KIND: KIND_FIT, TAG_VERSION: __version__, TAG_FIT_KEY: key}
    parent = _grid_parent(c, exp_id)
    if parent:
        tags[TAG_PARENT_RUN] = parent
    same = c.search_runs(
        [exp_id],
        filter_string=f"tags.`{TAG_KIND}` = '{KIND_FIT}' and tags.`{TAG_FIT_KEY}` = '{key}'",
        max_results=1,
    )
    if same:  # the same fit again: update its run (metrics, artifacts), don't add one
        run_id = same[0].info.run_id
        c.update_run(run_id, status="RUNNING")
    else:
        run_id = c.create_run(exp_id, run_name=f"fit-{doc['law']}", tags=tags).info.run_id
    _log_fit_metrics(c, run_id, doc)
    if parent:
        _log_headline(c, parent, doc)
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
        params=[] if same else [Param(k, str(v)) for k, v in params.items()],
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


def fit_key(experiments: list[str], filter_string: str, doc: dict) -> str:
    """What makes two fits "the same fit": sources, filter, law and fitting settings."""
    import hashlib

    ident = {
        "experiments": list(experiments),
        "filter": filter_string or "",
        "law": doc["law"],
        "huber_delta": doc.get("huber_delta"),
        "bootstrap": (doc.get("bootstrap") or {}).get("n", 0),
        "seed": (doc.get("bootstrap") or {}).get("seed"),
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def fit_metrics(doc: dict) -> dict[str, float]:
    """The numbers a fit run shows as metrics, so fits compare side by side in the runs table.

    Constants (E, A, B, alpha, beta, R*), Eq. 6's G, a, b, the fit's R^2, the loss-envelope and
    each benchmark's gamma_q, and for every interval in `ci95` its two ends (`<name>.ci95_lo`,
    `<name>.ci95_hi`).  Anything missing or not a finite number is left out.
    """
    import math

    out: dict[str, float] = {}

    def put(name: str, value) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        if math.isfinite(float(value)):
            out[name] = float(value)

    for k, v in (doc.get("params") or {}).items():
        put(k, v)
    for k in ("G", "a", "b"):
        put(k, (doc.get("compute_optimal") or {}).get(k))
    quality = doc.get("quality") or {}
    put("r2", quality.get("r2"))
    env_law = (doc.get("envelope") or {}).get("law") or {}
    for k, v in env_law.items():
        put(f"envelope.{k}", v)
    for m, d in (doc.get("downstream") or {}).items():
        for transform, g in ((d or {}).get("gamma_q") or {}).items():
            put(f"gamma_q.{m}" + ("" if transform == "raw" else f".{transform}"), g.get("gamma"))
    for k, interval in (doc.get("ci95") or {}).items():
        if isinstance(interval, list | tuple) and len(interval) == 2:
            put(f"{k}.ci95_lo", interval[0])
            put(f"{k}.ci95_hi", interval[1])
    return out


def _log_fit_metrics(c, run_id: str, doc: dict) -> None:
    import time

    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    metrics = [Metric(k, v, ts, 0) for k, v in fit_metrics(doc).items()]
    for i in range(0, len(metrics), 1000):
        c.log_batch(run_id, metrics=metrics[i : i + 1000])


#: The latest fit's headline numbers, shown on the grid's parent run.
HEADLINE = ("E", "A", "B", "alpha", "beta", "a", "b", "r2")


def _log_headline(c, parent_run_id: str, doc: dict) -> None:
    import time

    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    values = fit_metrics(doc)
    metrics = [Metric(f"fit.{k}", values[k], ts, 0) for k in HEADLINE if k in values]
    if metrics:
        c.log_batch(parent_run_id, metrics=metrics)


def _grid_parent(c, experiment_id: str) -> str | None:
    """The grid's parent run in this experiment (the newest one), if the grid made one."""
    runs = c.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_KIND}` = '{KIND_GRID}'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    return runs[0].info.run_id if runs else None


def _used_run_ids(doc: dict) -> list[str]:
    used = list(doc.get("runs_used", []))
    used += doc.get("data_constrained", {}).get("runs_used", [])
    return sorted(set(used))
