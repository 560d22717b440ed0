"""`slmscale grid SPEC`: train every trial of a grid spec (Ray Tune over Ray Train, tracked in
MLflow); `--dry-run` prints the plan only.  See docs/grid.md."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from slmscale.grid.plan import GridPlan, default_storage_path, load_plan, make_jobs

OVERRIDES_HELP = (
    "override spec fields, right after SPEC (e.g. optimizer.lr_max=3e-4 'models=[20M,85M]' "
    "resources.workers=2); values are YAML, validated like the file"
)


def add_spec_arguments(parser: argparse.ArgumentParser, overrides_help: str = OVERRIDES_HELP):
    """SPEC and its KEY=VALUE overrides (grid, train, status, design read a spec the same way)."""
    parser.add_argument("spec", help="grid spec YAML (tune_spaces/*.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=overrides_help)
    parser.add_argument("--experiment", help="MLflow experiment name (default: the spec's name)")


def add_tracking_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by `grid` and `train`."""
    add_spec_arguments(parser)
    from slmscale.tracking.store import TRACKING_URI_HELP

    parser.add_argument("--tracking-uri", help=TRACKING_URI_HELP)
    parser.add_argument(
        "--storage-path",
        help="checkpoints and Ray results (a local folder or any pyarrow/fsspec URI such as "
        "s3://...; default: grid_runs/<spec name> under the output root)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_tracking_arguments(parser)
    parser.add_argument(
        "--max-concurrent",
        type=int,
        help="trials at once (default: resources.max_concurrent_trials)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the trial table; start nothing"
    )
    parser.add_argument(
        "--format", choices=["table", "json"], default="table", help="dry-run output format"
    )


def prepare_jobs(args, plan_: GridPlan):
    """Resolve tracking and storage, create the experiment once, describe every trial."""
    from slmscale.grid.plan import check_data_present
    from slmscale.tracking import get_or_create_experiment, resolve_tracking_uri

    check_data_present(plan_.data)
    tracking_uri = resolve_tracking_uri(args.tracking_uri)
    storage = args.storage_path or default_storage_path(plan_.spec)
    if "://" not in storage:  # Ray's storage layer takes absolute paths or URIs only
        storage = str(Path(storage).resolve())
    make_jobs(plan_, tracking_uri, "", storage)  # every check before touching MLflow
    experiment_id = get_or_create_experiment(tracking_uri, args.experiment or plan_.spec.name)
    return tracking_uri, storage, make_jobs(plan_, tracking_uri, experiment_id, storage)


def open_grid_parent(args, plan_: GridPlan, tracking_uri: str, experiment_id: str) -> str:
    """The grid's parent run in MLflow (spec as run, trial table); trials nest under it."""
    import yaml

    from slmscale.grid.dryrun import trial_rows
    from slmscale.tracking.grid_run import open_grid_run

    spec_text = yaml.safe_dump(plan_.spec.model_dump(mode="json"), sort_keys=False)
    return open_grid_run(
        tracking_uri,
        experiment_id,
        plan_.spec.name,
        spec_text=spec_text,
        overrides=list(args.overrides),
        trial_rows=trial_rows(plan_.spec, plan_.data, plan_.trials),
        description=plan_.spec.description,
    )


def resume_command(command: str, args, tracking_uri: str, storage: str, extra=()) -> str:
    """The command line that resumes this grid (or trial) into the same runs."""
    import shlex

    words = ["slmscale", command, args.spec, *args.overrides]
    words += ["--tracking-uri", tracking_uri, "--storage-path", storage]
    if args.experiment:
        words += ["--experiment", args.experiment]
    return shlex.join([*words, *extra])


def browse_hint(tracking_uri: str, experiment_id: str, grid_name: str) -> str:
    """How to see the grid in the MLflow UI, its columns shown (the grid's saved view)."""
    from slmscale.tracking.grid_run import grid_view_id, view_url

    if tracking_uri.startswith(("http://", "https://")):
        ui, start = tracking_uri, ""
    else:
        ui, start = "http://127.0.0.1:5000", f"mlflow ui --backend-store-uri {tracking_uri}, then "
    return f"browse: {start}open {view_url(ui, experiment_id, grid_view_id(grid_name))}"


def run(args) -> int:
    plan_ = load_plan(args.spec, args.overrides)
    if args.dry_run:
        from slmscale.grid.dryrun import render_json, render_table

        spec, data, trials = plan_.spec, plan_.data, plan_.trials
        print(
            render_json(spec, data, trials)
            if args.format == "json"
            else render_table(spec, data, trials)
        )
        return 0
    from slmscale.grid.claims import Claims, claims_dir
    from slmscale.grid.driver import drive
    from slmscale.tracking.store import check_experiments, resolve_tracking_uri

    experiment = args.experiment or plan_.spec.name
    check_experiments(resolve_tracking_uri(args.tracking_uri), [experiment], allow_missing=True)
    tracking_uri, storage, jobs = prepare_jobs(args, plan_)
    # On a cluster (RAY_ADDRESS): refuse trials no node type can ever place, and bound the
    # trials in flight by what the node types and the head's memory hold (docs/cluster.md).
    from slmscale.grid.cluster_state import admit_on_cluster

    max_concurrent = admit_on_cluster(
        [j.resources for j in jobs],
        args.max_concurrent or plan_.spec.resources.max_concurrent_trials,
    )
    # One parent run per grid, even with two drivers starting together: find-or-create it under
    # a claim (slmscale.grid.claims), so the second driver finds the first one's.
    with Claims(claims_dir(tracking_uri, storage, jobs[0].experiment_id)) as claims:
        claims.claim(f"grid-{plan_.spec.name}")
        parent = open_grid_parent(args, plan_, tracking_uri, jobs[0].experiment_id)
    jobs = [replace(job, parent_run_id=parent) for job in jobs]
    outcome = drive(
        jobs, plan_.spec.resources, max_concurrent=max_concurrent, grid_name=plan_.spec.name
    )
    from slmscale.tracking.grid_run import finish_grid_run

    finish_grid_run(tracking_uri, parent, outcome.counts())
    print(outcome.render(), file=sys.stderr)
    print(f"tracking: {tracking_uri}  storage: {storage}", file=sys.stderr)
    print(browse_hint(tracking_uri, jobs[0].experiment_id, plan_.spec.name), file=sys.stderr)
    if outcome.interrupted:
        left = sum(s != "FINISHED" for s in outcome.statuses.values())
        print(
            f"interrupted: {len(outcome.stopped)} trials stopped (runs KILLED, each keeps its "
            f"last checkpoint), {left} not finished; resume with: "
            f"{resume_command('grid', args, tracking_uri, storage)}",
            file=sys.stderr,
        )
    return outcome.exit_code()
