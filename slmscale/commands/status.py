"""`slmscale status SPEC`: where a grid stands, read from the tracking store (starts nothing).

Each trial of the spec (with the same `key=value` overrides the grid was run with) is matched to
its MLflow run by trial key, the way `slmscale grid` resumes: FINISHED is done, RUNNING is running
(or its driver died: the run says which trial to resume), FAILED failed, KILLED was interrupted
(a rerun resumes it into the same run), and no run means left.  Useful from a laptop against a
cluster's tracking server while the grid runs.
"""

from __future__ import annotations

import argparse
import json
import sys

from slmscale.grid.plan import load_plan

STATES = ("done", "running", "failed", "killed", "left")
_STATE_OF_RUN = {"FINISHED": "done", "RUNNING": "running", "SCHEDULED": "running"}
_STATE_OF_RUN.update(FAILED="failed", KILLED="killed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from slmscale.commands.grid import add_spec_arguments
    from slmscale.tracking.store import add_tracking_uri_argument

    add_spec_arguments(
        parser, "the same spec overrides the grid was run with (they change the trial keys)"
    )
    add_tracking_uri_argument(parser)
    parser.add_argument(
        "--format", choices=["table", "json"], default="table", help="output format"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the status as JSON to FILE")


def _runs_by_key(tracking_uri: str, experiment: str) -> dict[str, dict] | None:
    """trial key -> {status, run_id, loss, failure} of its newest train run; None: no experiment."""
    from slmscale.tracking.schema import (
        KIND_TRAIN,
        M_TEST_LOSS_FINAL,
        TAG_FAILURE,
        TAG_KIND,
        TAG_PENDING,
        TAG_TRIAL_KEY,
    )
    from slmscale.tracking.store import client, stored_experiments

    stored = stored_experiments(tracking_uri)  # a SQLite store answers without MLflow (~3-12 s)
    if stored is not None and stored.get(experiment) != "active":
        return None
    c = client(tracking_uri)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = c.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`{TAG_KIND}` = '{KIND_TRAIN}'",
        max_results=50_000,
        order_by=["attributes.start_time ASC"],
    )
    out: dict[str, dict] = {}
    for run in runs:  # oldest first: a later run of the same key (should not exist) wins
        key = run.data.tags.get(TAG_TRIAL_KEY)
        if key:
            out[key] = {
                "run_id": run.info.run_id,
                "status": run.info.status,
                "loss": run.data.metrics.get(M_TEST_LOSS_FINAL),
                # why it failed; or, still waiting for workers, why (slmscale.grid.cluster_state)
                "failure": run.data.tags.get(TAG_FAILURE) or run.data.tags.get(TAG_PENDING),
            }
    return out


def _experiment_names(tracking_uri: str) -> list[str]:
    from slmscale.tracking.store import experiment_names, stored_experiments

    stored = stored_experiments(tracking_uri)
    if stored is None:
        return experiment_names(tracking_uri)
    return sorted(n for n, stage in stored.items() if stage == "active" and n != "Default")


def grid_status(spec_path: str, overrides, tracking_uri: str, experiment: str | None) -> dict:
    """The status document: counts per state and one row per trial, in dry-run order."""
    plan = load_plan(spec_path, overrides)
    name = experiment or plan.spec.name
    runs = _runs_by_key(tracking_uri, name)
    rows = []
    for t in plan.trials:
        run = (runs or {}).get(t.key)
        state = _STATE_OF_RUN.get(run["status"], "running") if run else "left"
        rows.append(
            {
                "trial_key": t.key,
                "model_size": t.model_size,
                "tokens": t.tokens,
                "epochs": t.epochs,
                "flops": t.flops,
                "state": state,
                "run_id": run["run_id"] if run else None,
                "test_loss_final": run["loss"] if run else None,
                "failure_reason": run["failure"] if run else None,
            }
        )
    counts = {s: sum(r["state"] == s for r in rows) for s in STATES}
    total_flops = sum(r["flops"] for r in rows) or 1.0
    done_flops = sum(r["flops"] for r in rows if r["state"] == "done")
    return {
        "grid": plan.spec.name,
        "experiment": name,
        "tracking_uri": tracking_uri,
        "experiment_exists": runs is not None,
        "experiments_in_store": [] if runs is not None else _experiment_names(tracking_uri),
        "trials": len(rows),
        "counts": counts,
        "flops_done_fraction": done_flops / total_flops,
        "rows": rows,
    }


def render(doc: dict) -> str:
    c = doc["counts"]
    head = (
        f"grid {doc['grid']}: {doc['trials']} trials: {c['done']} done, {c['running']} running, "
        f"{c['failed']} failed, {c['killed']} interrupted, {c['left']} left "
        f"({doc['flops_done_fraction']:.0%} of the grid's FLOPs done)"
    )
    lines = [head, f"store: {doc['tracking_uri']}  experiment: {doc['experiment']}"]
    if not doc["experiment_exists"]:
        lines.append(
            "(no runs yet: the experiment does not exist in this store; experiments there: "
            f"{', '.join(repr(n) for n in doc['experiments_in_store']) or 'none'})"
        )
    lines.append(
        f"{'trial_key':<16}  {'size':<10} {'D':>9} {'epochs':>6}  {'state':<8} {'loss':>7}"
    )
    for r in doc["rows"]:
        loss = f"{r['test_loss_final']:.4f}" if r["test_loss_final"] is not None else "-"
        line = f"{r['trial_key']:<16}  {r['model_size']:<10} {r['tokens']:>9.3g} "
        line += f"{r['epochs']:>6.2f}  {r['state']:<8} {loss:>7}"
        if r["failure_reason"] and r["state"] != "done":
            line += f"  {r['failure_reason']}"
        lines.append(line)
    if c["failed"] or c["killed"] or c["left"]:
        lines.append("resume: rerun the same `slmscale grid` command; finished trials are skipped")
    return "\n".join(lines)


def run(args) -> int:
    from slmscale.tracking.store import reading_tracking_uri

    tracking_uri = reading_tracking_uri(args.tracking_uri)
    doc = grid_status(args.spec, args.overrides, tracking_uri, args.experiment)
    if args.json:
        from slmscale.units import write_json_atomic

        write_json_atomic(args.json, doc)
    print(json.dumps(doc, indent=2) if args.format == "json" else render(doc))
    sys.stdout.flush()
    return 0
