"""`slmscale unigram`: SentencePiece unigram compression of a units dataset (a new units dataset)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--units", required=True, help="k-means units dataset (from tokenize)")
    parser.add_argument("--out", required=True, help="output directory (new units dataset)")
    parser.add_argument("--vocab", type=int, default=5000, help="SentencePiece vocabulary size")


def precheck(args) -> None:
    """The input units dataset exists (one line before SentencePiece and pyarrow load)."""
    from slmscale.units import load_meta

    load_meta(args.units)


def run(args) -> int:
    from slmscale.audio.table2 import format_accounting, format_table2
    from slmscale.audio.unigram import compress

    s = compress(args.units, args.out, vocab=args.vocab)
    meta = s["meta"]
    print(format_table2(s["source_counts"], meta["counts"]))
    print(f"wrote {args.out} (vocab {meta['vocab_size']}, model {meta['unigram_model']})")
    n_rows = sum(c["utterances"] for d in meta["counts"].values() for c in d.values())
    print(format_accounting(meta.get("n_inputs", n_rows), n_rows, meta.get("n_rejects", 0)))
    return 0
