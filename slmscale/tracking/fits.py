"""Fit runs (edge): read runs and eval-point curves for the fitter, log a fit run back.

A fit run is an MLflow run tagged `slmscale.kind=fit` in the (first) source experiment.  Its
params name the source experiments and the filter; its artifacts (under `fit/`) hold fit.json,
the figures and the report, and `run_ids.json`, the list of run ids the fit used, so a fit can
always be rerun from the store.  It nests under the grid whose runs it fitted (the trial runs'
own parent), or, when they span grids, under one experiment-level "study" run; each grid parent
involved shows the latest fit's headline numbers (`fit.E`, ...).  Its metrics carry each
constant's verdict (`<name>.identified`, `<name>.on_edge`), the ones fit.json states.
`mlflow` is imported lazily (through `store`); `check_experiments` needs only sqlite3.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from slmscale.errors import UserError
from slmscale.tracking.runs import log_metrics
from slmscale.tracking.schema import (
    ARTIFACT_EVAL_DETAILS,
    ARTIFACT_FIT_DIR,
    ARTIFACT_FIT_JSON,
    ARTIFACT_FIT_RUN_IDS,
    BENCHMARK_METRICS,
    DOWNSTREAM_METRICS,
    KIND_FIT,
    KIND_GRID,
    KIND_STUDY,
    M_FLOPS_FULL,
    M_TEST_LOSS,
    M_TEST_LOSS_FINAL,
    N_ITEMS_SUFFIX,
    PARAM_FIT_BOOTSTRAP,
    PARAM_FIT_FILTER,
    PARAM_FIT_HUBER_DELTA,
    PARAM_FIT_LAW,
    PARAM_FIT_N_RUNS_USED,
    PARAM_FIT_SOURCE_EXPERIMENTS,
    TAG_FIT_KEY,
    TAG_GRID,
    TAG_KIND,
    TAG_PARENT_RUN,
    TAG_TRIAL_KEY,
    TAG_VERSION,
)
from slmscale.tracking.store import (
    client,
    get_experiment_id,
    metric_history,
    runs_dataframe,
    stored_experiments,
    unknown_experiment_message,
)


def check_experiments(tracking_uri: str, experiments: list[str]) -> None:
    """A one-line error for an experiment the store does not hold, read with sqlite3 alone.

    Importing mlflow costs ~10 s on a busy machine; a typo should not.  Stores that are not a
    readable SQLite file (a tracking server) are left to the full check.
    """
    stored = stored_experiments(tracking_uri)
    for name in experiments if stored is not None else ():
        if name == "Default" or stored.get(name) != "active":  # Default: never a study's runs
            raise UserError(unknown_experiment_message(tracking_uri, name, stored))


# The runs table (DESIGN.md "Runs table") from the train runs' MLflow columns, plus what the
# fitter reads beyond store.runs_table: seed, the full FLOP count's inputs, the grid it ran in.
_COLUMNS = {
    "run_id": "run_id",
    "status": "status",
    "params.model_size": "model_size",
    "params.tokenizer": "tokenizer",
    "params.n_params": "params",
    "params.n_params_total": "n_params_total",
    "params.n_layers": "n_layers",
    "params.d_model": "d_model",
    "params.n_heads": "n_heads",
    "params.context": "context",
    "params.tokens": "tokens",
    "params.unique_tokens": "unique_tokens",
    "params.epochs": "epochs",
    "params.seed": "seed",
    "params.units_dataset": "units_dataset",
    f"metrics.{M_TEST_LOSS_FINAL}": "loss",
    f"metrics.{M_FLOPS_FULL}": "flops_full",
    f"tags.{TAG_TRIAL_KEY}": "trial_key",
    f"tags.{TAG_PARENT_RUN}": "parent_run_id",
    f"tags.{TAG_GRID}": "grid",
}
_NUMERIC = ("params", "n_params_total", "n_layers", "d_model", "n_heads", "context", "tokens")
_NUMERIC += ("unique_tokens", "epochs", "loss", "flops_full")


def read_runs(tracking_uri: str, experiments: list[str], filter_string: str = "") -> dict:
    """The runs table of the experiments as a mapping column -> list (DESIGN.md "Runs table").

    `flops_full` is the run's logged metric, else computed from its shape params
    (`laws.flops.full_from_params`, the model module's count); `<metric>_n_items` comes from the logged metric, else
    from one run's eval details (every run scores the same items).
    """
    import pandas as pd

    from slmscale.laws.flops import full_from_params, six_nd

    df = runs_dataframe(tracking_uri, experiments, filter_string)
    cols = dict(_COLUMNS)
    for m in DOWNSTREAM_METRICS:
        cols[f"metrics.{m}"] = m
        cols[f"metrics.{m}{N_ITEMS_SUFFIX}"] = f"{m}{N_ITEMS_SUFFIX}"
    out = pd.DataFrame({new: df[old] if old in df else None for old, new in cols.items()})
    for c in (*_NUMERIC, *DOWNSTREAM_METRICS):
        out[c] = pd.to_numeric(out[c], errors="coerce")
    out["flops"] = six_nd(out["params"], out["tokens"])
    vocab = (out["n_params_total"] - out["params"]) / (2.0 * out["d_model"])  # untied head
    computed = [
        full_from_params(*row)
        for row in zip(
            out["n_layers"], out["d_model"], out["n_heads"], out["context"], vocab, out["tokens"],
            strict=True,
        )
    ]  # fmt: skip
    out["flops_full"] = out["flops_full"].where(out["flops_full"].notna(), computed)
    runs = {c: out[c].tolist() for c in out.columns}
    _fill_items(tracking_uri, runs)
    return runs


def _fill_items(tracking_uri: str, runs: dict) -> None:
    """`<metric>_n_items` from one run's eval details where no run logged it as a metric."""
    need = [
        m for m in DOWNSTREAM_METRICS
        if m in runs and not any(v == v and v for v in runs.get(f"{m}{N_ITEMS_SUFFIX}") or [])
        and any(v == v for v in runs[m])
    ]  # fmt: skip
    if not need:
        return
    idx = next(i for i, v in enumerate(runs[need[0]]) if v == v)
    scored = items_scored(tracking_uri, runs["run_id"][idx])
    for m in need:
        if scored.get(m):
            runs[f"{m}{N_ITEMS_SUFFIX}"] = [float(scored[m])] * len(runs["run_id"])


def items_scored(tracking_uri: str, run_id: str) -> dict[str, int]:
    """metric -> items scored, from the run's eval details artifact ({} when it has none: the
    chance test then says the count is unknown)."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client(tracking_uri).download_artifacts(run_id, ARTIFACT_EVAL_DETAILS, tmp)
            details = json.loads(Path(path).read_text())
        except Exception:  # no artifact (a run made by hand, or scored elsewhere)
            return {}
    out = {}
    for bench, d in details.items():
        n = (d or {}).get("items_scored") if isinstance(d, dict) else None
        if bench in BENCHMARK_METRICS and n:
            out[BENCHMARK_METRICS[bench]] = int(n)
    return out


def read_curves(tracking_uri: str, runs: dict, single_epoch_only: bool = True) -> dict:
    """Long-format curves (run_id, tokens, flops, test_loss) of the given runs' `test_loss`.

    step = tokens seen (DESIGN.md), so flops = 6 N x step; multi-epoch runs are skipped by
    default (the loss envelope of Figure 1 is over single-epoch runs).
    """
    from slmscale.laws.flops import six_nd

    out: dict[str, list] = {"run_id": [], "tokens": [], "flops": [], M_TEST_LOSS: []}
    rows = zip(runs["run_id"], runs["params"], runs["tokens"], runs["unique_tokens"], strict=True)
    for run_id, n, d, u in sorted(rows, key=lambda r: str(r[0])):
        multi = u == u and d == d and u < d  # u == u: not NaN
        if (single_epoch_only and multi) or n != n:
            continue
        for step, value in metric_history(tracking_uri, run_id, M_TEST_LOSS):
            out["run_id"].append(run_id)
            out["tokens"].append(float(step))
            out["flops"].append(float(six_nd(n, step)))
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
    exp_ids = [get_experiment_id(tracking_uri, e) for e in experiments]
    grids = grid_parents(c, exp_ids, doc)
    parent = grids[0] if len(grids) == 1 else _study_run(c, exp_id, experiments) if grids else None
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
    values = fit_metrics(doc)
    log_metrics(tracking_uri, run_id, values, 0)
    for grid_run in grids:  # each grid parent shows the latest fit's headline numbers
        log_metrics(
            tracking_uri, grid_run, {f"fit.{k}": values[k] for k in HEADLINE if k in values}, 0
        )
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
    for k, v in (doc.get("verdicts") or {}).items():  # the verdicts fit.json states
        out[f"{k}.identified"] = 1.0 if v.get("identified") else 0.0
        out[f"{k}.on_edge"] = 1.0 if v.get("edge") else 0.0
    return out


#: The latest fit's headline numbers, shown on the grid's parent run.
HEADLINE = ("E", "A", "B", "alpha", "beta", "a", "b", "r2")


def grid_parents(c, experiment_ids: list[str], doc: dict) -> list[str]:
    """The grid parent runs of the runs the fit used (their `mlflow.parentRunId`), sorted."""
    used = _used_run_ids(doc)
    parents = set()
    for i in range(0, len(used), 100):
        chunk = used[i : i + 100]
        ids = ", ".join(f"'{r}'" for r in chunk)
        for r in c.search_runs(
            experiment_ids,
            filter_string=f"attributes.run_id IN ({ids})",
            max_results=1000,
        ):
            p = r.data.tags.get(TAG_PARENT_RUN)
            if p:
                parents.add(p)
    out = []
    for p in sorted(parents):
        try:
            if c.get_run(p).data.tags.get(TAG_KIND) == KIND_GRID:
                out.append(p)
        except Exception:  # a parent deleted since: nothing to nest under
            continue
    return out


def _study_run(c, experiment_id: str, experiments: list[str]) -> str:
    """The experiment-level parent of fits that span grids (made once, then reused)."""
    name = "study-" + "+".join(experiments)
    found = c.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_KIND}` = '{KIND_STUDY}' and attributes.run_name = '{name}'",
        max_results=1,
    )
    if found:
        return found[0].info.run_id
    run = c.create_run(experiment_id, run_name=name, tags={TAG_KIND: KIND_STUDY})
    c.set_terminated(run.info.run_id, status="FINISHED")
    return run.info.run_id


def _used_run_ids(doc: dict) -> list[str]:
    used = list(doc.get("runs_used", []))
    used += doc.get("data_constrained", {}).get("runs_used", [])
    return sorted(set(used))
