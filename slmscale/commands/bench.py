"""`slmscale bench`: performance figures, each beside its baseline measured in the same run.

Prints one table; writes reports/bench/<machine>.json and .md (and --json FILE).  Sections:
fit, data, train, tokenize, eval (see docs/bench.md).  `--gpu` measures the GPU figures when
torch sees a GPU, without Ray (the Ray Train rows need the CPU path); otherwise they are n/a.
With `--gpu` and no `--only`, the fit section (CPU only, no GPU figure) is left out.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gpu",
        action="store_true",
        help="measure the GPU figures (MFU, peak memory, shared GPU, HuBERT) on the visible GPU, "
        "without Ray or MLflow; sections data, train, tokenize, eval unless --only",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results JSON here")
    parser.add_argument(
        "--only",
        metavar="SECTION,...",
        help="comma-separated sections to run: fit, data, train, tokenize, eval (default: all)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller work per figure (some baselines timed on a subset and extrapolated)",
    )


def run(args) -> int:
    from slmscale.bench.context import FULL, QUICK
    from slmscale.bench.results import render_table
    from slmscale.bench.run import gpu_device, parse_only, run_bench, save
    from slmscale.progress import Progress

    sections = parse_only(args.only, gpu=args.gpu)
    device = gpu_device(args.gpu)
    scale = QUICK if args.quick else FULL
    with Progress(len(sections), "bench", " sections") as progress:
        figures, desc = run_bench(sections, scale, device, progress)
    paths = save(figures, desc, args.json)
    print(render_table(figures))
    print()
    if args.gpu and device is None:
        print("--gpu: torch sees no GPU; the GPU rows are n/a")
    print("written: " + ", ".join(str(p) for p in paths))
    return 0
