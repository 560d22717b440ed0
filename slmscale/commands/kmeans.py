"""`slmscale kmeans`: train k-means centroids on a sample of encoder frames (writes .npy + .sha256)."""

from __future__ import annotations

import argparse

from slmscale.commands.tokenize import add_encoder_arguments, encoder_spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_encoder_arguments(parser)
    parser.add_argument("--k", type=int, default=500, help="number of units K (paper: 500)")
    parser.add_argument("--out", required=True, help="centroids file (.npy)")
    parser.add_argument("--max-frames", type=int, default=200_000, help="frames to cluster")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    from slmscale.audio.kmeans import train_kmeans
    from slmscale.audio.table2 import format_accounting
    from slmscale.errors import UserError

    if args.k < 1 or args.k > 65536:
        raise UserError(f"--k {args.k}: must be in 1..65536")
    s = train_kmeans(
        args.input,
        encoder_spec(args),
        args.k,
        args.out,
        max_frames=args.max_frames,
        seed=args.seed,
        test_fraction=args.test_fraction,
    )
    print(
        f"k-means K={s['k']} dim={s['dim']} on {s['frames']:,} frames "
        f"({s['frames'] / 3600 / max(1e-9, _rate(args)):.3g} h) of {s['encoder_id']}"
    )
    print(f"wrote {s['path']}  sha256 {s['sha256']}  (also {s['path']}.sha256)")
    print(format_accounting(s["files"] + s["rejected"], s["files"], s["rejected"]))
    return 0


def _rate(args) -> float:
    """Frames per second of the chosen encoder, to show hours clustered."""
    from slmscale.audio.unit_encoder import EncoderSpec

    if args.encoder == "logmel":
        return 100.0
    return (
        EncoderSpec(kind=args.encoder, model=args.model, layer=args.layer)
        .build()
        .encoder.frame_rate
    )
