"""`slmscale grid SPEC`: train every trial of a grid spec; `--dry-run` prints the plan only."""

from __future__ import annotations

import argparse
from pathlib import Path

from slmscale.config import load_grid_spec
from slmscale.errors import UserError
from slmscale.grid.dryrun import render_json, render_table
from slmscale.grid.expand import expand_grid, resolve_data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="grid spec YAML (tune_spaces/*.yaml)")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the trial table; start nothing"
    )
    parser.add_argument(
        "--format", choices=["table", "json"], default="table", help="dry-run output format"
    )


def plan(spec_path: str):
    spec = load_grid_spec(spec_path)
    data = resolve_data(spec, Path(spec_path).parent)
    return spec, data, expand_grid(spec, data)


def run(args) -> int:
    spec, data, trials = plan(args.spec)
    if args.dry_run:
        print(
            render_json(spec, trials) if args.format == "json" else render_table(spec, data, trials)
        )
        return 0
    raise UserError("training a grid is not built yet; use --dry-run to see the plan")
