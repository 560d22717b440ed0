"""`slmscale kmeans`: train k-means centroids on a sample of encoder frames (writes .npy + .sha256)."""

from __future__ import annotations

import argparse

from slmscale.commands.tokenize import add_encoder_arguments, check_model, encoder_spec
from slmscale.commands.tokenize import precheck as precheck  # the CLI runs it first

SHOW_REJECTS = 50  # reject reasons printed; all of them go to OUT.rejects.tsv


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_encoder_arguments(parser)
    parser.add_argument("--k", type=int, default=500, help="number of units K (paper: 500)")
    parser.add_argument("--out", required=True, help="centroids file (.npy)")
    parser.add_argument("--max-frames", type=int, default=200_000, help="frames to cluster")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the frame sample and of k-means (default: 0)"
    )


def run(args) -> int:
    from slmscale.errors import UserError

    if args.k < 1 or args.k > 65536:
        raise UserError(f"--k {args.k}: must be in 1..65536")
    check_model(args)
    from slmscale.audio.kmeans import train_kmeans
    from slmscale.audio.table2 import format_accounting

    s = train_kmeans(
        args.input,
        encoder_spec(args),
        args.k,
        args.out,
        max_frames=args.max_frames,
        seed=args.seed,
        test_fraction=args.test_fraction,
    )
    _report_rejects(s["rejects"], args.out)
    print(
        f"k-means K={s['k']} dim={s['dim']} on {s['frames']:,} frames "
        f"({s['seconds'] / 3600:.3g} h of audio, {s['frame_rate']:g} frames/s) of {s['encoder_id']}"
    )
    print(f"wrote {s['path']}  sha256 {s['sha256']}  (also {s['path']}.sha256)")
    print(format_accounting(s["files"] + s["rejected"], s["files"], s["rejected"]))
    return 0


def _report_rejects(rejects: list[tuple[str, str]], out: str) -> None:
    """Every rejected input with its reason: on stderr (the first few) and in OUT.rejects.tsv."""
    if rejects:
        from slmscale.commands.tokenize import print_rejects
        from slmscale.units import write_bytes_atomic

        path = f"{out}.rejects.tsv"
        lines = "".join(f"{src}\t{why}\n" for src, why in rejects)
        write_bytes_atomic(path, ("source\terror\n" + lines).encode())
        print_rejects("kmeans", rejects[:SHOW_REJECTS], len(rejects), SHOW_REJECTS, path)
