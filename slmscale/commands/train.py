"""`slmscale train SPEC [--trial KEY | --index I]`: one trial of a grid, in this process,
without Ray Tune (for debugging); still tracked in MLflow as the trial's one run."""

from __future__ import annotations

import argparse
import sys

from slmscale.commands.grid import add_tracking_arguments, prepare_jobs, resume_command
from slmscale.errors import UserError
from slmscale.grid.plan import load_plan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_tracking_arguments(parser)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--trial", help="trial key (see `slmscale grid SPEC --dry-run`)")
    which.add_argument("--index", type=int, help="trial index in the dry-run table (0-based)")


def _pick(trials, key: str | None, index: int | None) -> int:
    if key is not None:
        for i, t in enumerate(trials):
            if t.key == key:
                return i
        raise UserError(f"--trial: no trial with key {key!r} in this grid (see --dry-run)")
    if index is not None:
        if not 0 <= index < len(trials):
            raise UserError(f"--index: {index} is out of range (the grid has {len(trials)} trials)")
        return index
    if len(trials) == 1:
        return 0
    raise UserError(f"the grid has {len(trials)} trials: choose one with --trial KEY or --index I")


def run(args) -> int:
    from slmscale.grid.runner import run_in_process

    plan = load_plan(args.spec, args.overrides)
    i = _pick(plan.trials, args.trial, args.index)
    plan.trials = [plan.trials[i]]
    tracking_uri, storage, (job,) = prepare_jobs(args, plan)
    print(f"trial {job.key} ({job.run_name}): {job.tokens:,} tokens", file=sys.stderr)

    def waiting(holder: str) -> None:
        print(f"trial {job.key} is being trained by {holder}; waiting for it", file=sys.stderr)

    try:
        status, result = run_in_process(job, on_wait=waiting)
    except KeyboardInterrupt:
        print(
            f"trial {job.key} interrupted: its run is KILLED; resume with: "
            f"{resume_command('train', args, tracking_uri, storage, ['--trial', job.key])}",
            file=sys.stderr,
        )
        return 130
    if status == "SKIPPED":
        print(f"trial {job.key} already FINISHED in {tracking_uri}; skipped", file=sys.stderr)
        return 0
    if result.status != "FINISHED":
        print(f"trial {job.key} FAILED: {result.reason}", file=sys.stderr)
        return 1
    print(
        f"trial {job.key} FINISHED: test_loss_final {result.test_loss_final:.4f}, "
        f"{result.tokens_trained:,} tokens, {result.tokens_per_sec:,.0f} tokens/s",
        file=sys.stderr,
    )
    return 0
