"""Benchmarks on the unigram tokenizer: encode a k-means units dataset with an existing
SentencePiece model (the one `slmscale unigram` trained on the demo's corpus).

`slmscale unigram` trains its model on a corpus; a benchmark must be encoded with the *same*
model, or the scorer refuses it (different tokenizer fingerprint).  The encoding, the round-trip
check and the meta keys are slmscale.audio.unigram's, so the benchmark's tokenizer identity
(encoder, k-means, K, dedup, unigram model hash) is the training data's.  Pure core.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from slmscale import __version__
from slmscale.errors import UserError
from slmscale.units import (
    META_FILE,
    REJECTS_FILE,
    UNITS_SCHEMA,
    load_meta,
    meta_hash,
    read_rejects,
    sha256_file,
    shard_paths,
    write_json_atomic,
    write_table_atomic,
)


def encode_like(model_path: Path, units_dir: Path, out_dir: Path) -> dict:
    """k-means units at `units_dir` -> unigram units at `out_dir`, with the model at
    `model_path`; the meta file is written last.  Returns the new meta."""
    import sentencepiece as spm

    from slmscale.audio.shards import count_units
    from slmscale.audio.unigram import _encode_table

    src, out = Path(units_dir), Path(out_dir)
    meta = load_meta(src)
    if meta.get("unigram_sha256"):
        raise UserError(f"{src}: already unigram units; give the k-means units dataset")
    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    paths = shard_paths(src)
    for path in paths:
        write_table_atomic(
            _encode_table(pq.read_table(path, schema=UNITS_SCHEMA), sp), out / path.name
        )
    write_table_atomic(read_rejects(src), out / REJECTS_FILE)
    new_meta = {
        **meta,
        "n_units": sp.get_piece_size(),
        "vocab_size": sp.get_piece_size(),
        "unigram_model": str(Path(model_path).resolve()),
        "unigram_sha256": sha256_file(model_path),
        "source_units": {"path": str(src.resolve()), "meta_hash": meta_hash(src)},
        "package_version": __version__,
        "counts": count_units(out, len(paths)) if paths else {},
    }
    write_json_atomic(out / META_FILE, new_meta)
    return new_meta
