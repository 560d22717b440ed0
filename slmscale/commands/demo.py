"""`slmscale demo`: the whole pipeline on a synthetic speech world, on a laptop CPU.

No network, no GPU, no arguments needed: renders the world, trains log-mel k-means, tokenizes,
trains the tiny grid of tune_spaces/demo.yaml (scored on the demo's benchmarks), fits the laws
and writes the report, all under `--workdir`.  A rerun reuses every finished stage.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from slmscale.progress import format_seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workdir",
        default="slmscale-demo",
        help="working folder for everything: world, units, MLflow store, report (default: %(default)s)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smaller world and grid (tune_spaces/demo_quick.yaml): about 3 minutes on 2 cores",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the world and of k-means")
    parser.add_argument(
        "--report-dir",
        default=None,
        help="also copy the report here (default: WORKDIR/reports/<grid name>)",
    )


def run(args) -> int:
    from slmscale.demo.run import run_demo

    result = run_demo(
        Path(args.workdir),
        quick=args.quick,
        seed=args.seed,
        report_dir=Path(args.report_dir) if args.report_dir else None,
    )
    total = sum(result.timings.values())
    print("\nslmscale demo: done")
    for name, secs in result.timings.items():
        note = " (reused)" if result.reused.get(name) else ""
        print(f"  {name:<9} {secs:7.1f} s{note}")
    print(f"  {'total':<9} {total:7.1f} s ({format_seconds(total)})")
    print(f"report:  {result.report_dir / 'report.md'}")
    print(f"         {result.report_dir / 'report.html'}")
    print(f"browse the runs:  mlflow ui --backend-store-uri {result.tracking_uri}")
    return 0
