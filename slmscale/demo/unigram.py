"""Benchmarks on the unigram tokenizer: encode a k-means units dataset with an existing
SentencePiece model (the one `slmscale unigram` trained on the demo's corpus).

`slmscale unigram` trains its model on a corpus; a benchmark must be encoded with the *same*
model, or the scorer refuses it (different tokenizer fingerprint).  The encoding, the round-trip
check and the meta are slmscale.audio.unigram's (`encode_dataset`), so the benchmark's tokenizer
identity (encoder, k-means, K, dedup, unigram model hash) is the training data's.  Pure core.
"""

from __future__ import annotations

from pathlib import Path

from slmscale.audio.unigram import check_source, encode_dataset


def encode_like(model_path: Path, units_dir: Path, out_dir: Path) -> dict:
    """k-means units at `units_dir` -> unigram units at `out_dir`, with the model at
    `model_path` (copied to `out_dir/unigram.model`); the meta is written last.  Returns it."""
    src, out = Path(units_dir), Path(out_dir)
    check_source(src, out)
    return encode_dataset(src, out, Path(model_path).read_bytes())
