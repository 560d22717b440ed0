"""`slmscale demo`: the whole pipeline on a synthetic speech world, on a laptop CPU.

No network, no GPU, no arguments needed: renders the world, trains log-mel k-means, tokenizes,
trains the tiny grid of tune_spaces/demo.yaml (scored on the demo's benchmarks) and the paper's
two ablations (audiobook corpus, unigram tokenizer), fits the laws and writes the report, all
under `--workdir`.  A rerun reuses every finished stage.  At the end it prints where the time
went (each stage, and per trial the training seconds against the fixed cost around them), then
the report, the `mlflow ui` command and the link to the grid's saved view.
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
        help="a smaller world and grid (tune_spaces/demo_quick.yaml), no ablations: "
        "about a minute on 2 cores (docs/demo.md)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the world and of k-means")
    parser.add_argument(
        "--compare-schedules",
        action="store_true",
        help="also train the grid under the other LR schedule (cosine <-> wsd) as its own "
        "experiment and compare the two in the report (losses, constants, compute)",
    )
    parser.add_argument(
        "--report-dir",
        default=None,
        help="also copy the report here (default: WORKDIR/reports/<grid name>)",
    )


def run(args) -> int:
    from slmscale.demo.run import closing_lines, run_demo

    result = run_demo(
        Path(args.workdir),
        quick=args.quick,
        seed=args.seed,
        report_dir=Path(args.report_dir) if args.report_dir else None,
        compare_schedules=args.compare_schedules,
    )
    if args.report_dir and not args.quick:
        # What `python -m slmscale.demo.reference check` compares the code with later.
        from slmscale.demo.reference import write

        print(f"reference trials: {write(Path(args.workdir), Path(args.report_dir))}")
    from slmscale.demo.timing import format_breakdown, trial_times

    total = sum(result.timings.values())
    print("\nslmscale demo: done")
    ran = {g for s, g in result.grid_stages.items() if not result.reused.get(s)}
    times = trial_times(result.tracking_uri, result.experiments, ran) if ran else []
    print(format_breakdown(result.timings, result.reused, times, result.grid_stages))
    print(f"total: {format_seconds(total)}")
    for line in closing_lines(result):  # the report, `mlflow ui`, the link to the grid's view
        print(line)
    return 0
