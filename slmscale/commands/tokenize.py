"""`slmscale tokenize`: audio corpora -> a units dataset (Ray Data; `--engine local` without Ray)."""

from __future__ import annotations

import argparse
import sys


def add_encoder_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by `tokenize` and `kmeans`: which encoder, and how it batches and windows."""
    parser.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="NAME[:SPLIT]=PATH",
        help="a folder tree, CSV/TSV manifest or Parquet; repeatable; SPLIT fixes the split "
        "(e.g. librispeech:test=...), else the corpus's own folders (LibriSpeech dev-*/test-*, "
        "ZeroSpeech dev/test, StoryCloze) or a 1%% test split by utterance-id hash",
    )
    parser.add_argument(
        "--encoder",
        choices=["logmel", "hubert"],
        default="logmel",
        help="frame features: hubert (a HubertModel layer, the paper's; needs --model) or "
        "logmel (log-mel filterbanks, no weights; the demo's) (default: logmel)",
    )
    parser.add_argument(
        "--model", help="HubertModel: local directory or Hugging Face id in the local cache"
    )
    parser.add_argument(
        "--allow-download",
        action="store_true",
        help="let a --model hub id be downloaded (default: local files only, no network)",
    )
    parser.add_argument("--layer", type=int, help="HuBERT layer (default 11)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if visible) | cpu | cuda")
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="HuBERT compute precision (auto: bf16 on CUDA, fp32 on CPU); part of the "
        "tokenizer's identity",
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.01,
        help="share of the utterances of an input without a :SPLIT or known split folders that "
        "go to its test split, by a stable hash of the utterance id (default: 0.01)",
    )
    parser.add_argument(
        "--batch-seconds",
        type=float,
        help="padded audio per encoder batch (default 200 on GPUs, 40 on CPUs; lowered when "
        "memory is short)",
    )
    parser.add_argument(
        "--window-seconds",
        type=float,
        default=30.0,
        help="long files are encoded in windows this long (with --context-seconds either side) "
        "so memory does not grow with the file (default: 30)",
    )
    parser.add_argument(
        "--context-seconds", type=float, default=2.0, help="HuBERT context either side of a window"
    )


def check_model(args) -> None:
    """A missing --model is one line before torch or transformers are even imported."""
    if args.encoder == "hubert" and args.model:
        from slmscale.audio.hf_model import resolve_model

        resolve_model(args.model, args.allow_download)


def precheck(args) -> None:
    """Checks that need no heavy import, for the CLI to run before anything else (a missing
    input, k-means file or model is then one line in about a second, before torch loads)."""
    from pathlib import Path

    from slmscale.audio.inputs import InputSpec
    from slmscale.errors import UserError

    for text in args.input:
        spec = InputSpec.parse(text)
        if not Path(spec.path).exists():
            raise UserError(f"--input {spec.dataset}={spec.path}: no such file or directory")
    kmeans = getattr(args, "kmeans", None)  # tokenize's; `slmscale kmeans` writes one
    if kmeans and not Path(kmeans).is_file():
        raise UserError(f"--kmeans {kmeans}: no such file")
    check_model(args)


def encoder_spec(args):
    from slmscale.audio.unit_encoder import EncoderSpec

    return EncoderSpec(
        kind=args.encoder,
        model=args.model,
        layer=args.layer,
        device=args.device,
        batch_seconds=200.0 if args.batch_seconds is None else args.batch_seconds,
        window_seconds=args.window_seconds,
        context_seconds=args.context_seconds,
        allow_download=args.allow_download,
        precision=args.precision,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_encoder_arguments(parser)
    parser.add_argument("--out", required=True, help="output directory (units dataset)")
    parser.add_argument("--kmeans", required=True, help="centroids .npy (or fairseq .bin)")
    parser.add_argument("--trust-pickle", action="store_true", help="allow a pickled .bin k-means")
    parser.add_argument("--no-dedup", action="store_true", help="keep consecutive repeats")
    parser.add_argument("--shard-size", type=int, default=1000, help="inputs per shard")
    parser.add_argument(
        "--engine",
        choices=["ray", "local"],
        default="ray",
        help="ray: Ray Data streaming through encoder actors (GPUs, clusters); local: one "
        "process, same units (small jobs, debugging) (default: ray)",
    )
    parser.add_argument(
        "--num-actors",
        type=int,
        help="max encoder actors (default: GPUs, or CPUs/2 as far as memory allows; printed)",
    )
    parser.add_argument("--num-gpus", type=float, help="GPUs per actor (default: 1 if any)")
    parser.add_argument("--batch-size", type=int, default=32, help="inputs per actor call")
    parser.add_argument(
        "--no-token-store",
        action="store_true",
        help="skip building the training token store (seed 0) at the end; "
        "the first trial then builds it",
    )


def run(args) -> int:
    check_model(args)
    from slmscale.audio.pipeline import tokenize
    from slmscale.audio.table2 import format_accounting, format_table2

    summary = tokenize(
        args.input,
        args.out,
        encoder_spec(args),
        args.kmeans,
        trust_pickle=args.trust_pickle,
        dedup=not args.no_dedup,
        test_fraction=args.test_fraction,
        shard_size=args.shard_size,
        engine=args.engine,
        num_actors=args.num_actors,
        num_gpus=args.num_gpus,
        batch_size=args.batch_size,
        batch_seconds=args.batch_seconds,
    )
    print(format_table2(summary["meta"]["counts"]))
    print(
        f"shards: {summary['shards_written']} written, {summary['shards_skipped']} already done; "
        f"{summary['audio_seconds'] / 3600:.3g} h of audio in {summary['wall_s']:.1f} s -> {args.out}"
    )
    print(format_accounting(summary["n_inputs"], summary["n_rows"], summary["n_rejects"]))
    _print_rejects(args.out, summary["n_rejects"])
    if not args.no_token_store:  # what trials read (slmscale/tokenstore.py); ENOSPC: exit 2
        from slmscale.tokenstore import build_store_for_units

        store = build_store_for_units(args.out)
        if store is not None:
            print(f"token store: {store.n_tokens:,} training tokens (seed 0) in {store.path}")
    return 0


SHOW_REJECTS = 20


def _print_rejects(out: str, n_rejects: int) -> None:
    """Each rejected input with its reason (the first few on stderr; all in rejects.parquet)."""
    if n_rejects:
        from slmscale.units import REJECTS_FILE, read_rejects

        t = read_rejects(out).slice(0, SHOW_REJECTS).to_pydict()
        shown = zip(t["source"], t["error"], strict=True)
        print_rejects("tokenize", shown, n_rejects, SHOW_REJECTS, f"{out}/{REJECTS_FILE}")


def print_rejects(prog: str, shown, n: int, show: int, where: str) -> None:
    """The `shown` (source, reason) pairs on stderr, then how many inputs were rejected in all
    and where every one is listed."""
    for src, why in shown:
        print(f"{prog}: rejected {src}: {why}", file=sys.stderr)
    more = f" ({n - show} more not shown)" if n > show else ""
    print(
        f"{prog}: {n} inputs rejected{more}; all listed with their reasons in {where}",
        file=sys.stderr,
    )
