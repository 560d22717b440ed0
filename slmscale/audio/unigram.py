"""SentencePiece unigram compression of a units dataset (the paper's "unigram" tokenizer).

Each k-means unit u is written as one character (U+4E00 + u, a block with no whitespace or
normalisation surprises), SentencePiece unigram is trained on the train split, and every
utterance is re-encoded into piece ids.  The result is a new units dataset whose `n_units` is
the vocabulary size and whose meta names the model and its SHA-256.  Durations are carried
over (frames per piece = sum of its units' durations), and every utterance is checked to decode
back to exactly its original units.  Pure core: no Ray.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from slmscale import __version__
from slmscale.errors import UserError
from slmscale.progress import Progress
from slmscale.units import (
    META_FILE,
    REJECTS_FILE,
    UNITS_SCHEMA,
    dataset_digest,
    load_meta,
    read_rejects,
    sha256_file,
    shard_paths,
    write_bytes_atomic,
    write_json_atomic,
    write_table_atomic,
)
from slmscale.units_digest import SHARD_DIGESTS, shard_digests

BASE = 0x4E00
MAX_UNITS = 0x9FFF - BASE + 1


def units_to_text(units) -> str:
    return "".join(chr(BASE + int(u)) for u in units)


def text_to_units(text: str) -> list[int]:
    return [ord(c) - BASE for c in text]


def _train_sentences(root: Path, k: int, max_sentences: int) -> Iterator[str]:
    """Up to `max_sentences` train utterances, then every unit alone once, so that a unit never
    seen in training still has a piece (no <unk>: decoding must return the units exactly)."""
    n = 0
    for path in shard_paths(root):
        t = pq.read_table(path, columns=["split", "units"])
        for s, units in zip(t["split"].to_pylist(), t["units"].to_pylist(), strict=True):
            if s == "train" and units and n < max_sentences:
                n += 1
                yield units_to_text(units)
    yield from units_to_text(range(k))


def train_unigram(root: Path, k: int, vocab: int, max_sentences: int = 2_000_000) -> bytes:
    """A serialized SentencePiece unigram model trained on the train split's units."""
    import sentencepiece as spm

    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_train_sentences(root, k, max_sentences),
            model_writer=model,
            model_type="unigram",
            vocab_size=vocab,
            character_coverage=1.0,
            normalization_rule_name="identity",
            add_dummy_prefix=False,
            split_by_whitespace=False,
            split_by_unicode_script=False,
            split_by_number=False,
            max_sentence_length=1 << 20,
            max_sentencepiece_length=16,
            unk_id=0,
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            num_threads=2,
            minloglevel=2,
        )
    except RuntimeError as exc:
        raise UserError(f"unigram: SentencePiece training failed: {exc}") from None
    return model.getvalue()


def _encode_table(t: pa.Table, sp) -> pa.Table:
    ids_col, dur_col = [], []
    for units, durations in zip(t["units"].to_pylist(), t["durations"].to_pylist(), strict=True):
        ids = sp.encode(units_to_text(units), out_type=int)
        pieces = [sp.id_to_piece(i) for i in ids]
        if text_to_units("".join(pieces)) != units:
            raise RuntimeError(f"unigram round trip failed for {len(units)} units")
        bounds = np.cumsum([0] + [len(p) for p in pieces])
        sums = np.add.reduceat(np.asarray(durations, dtype=np.int64), bounds[:-1]) if ids else []
        ids_col.append(np.asarray(ids, dtype=np.uint16))
        dur_col.append(np.minimum(np.asarray(sums, dtype=np.int64), 65535).astype(np.uint16))
    t = t.set_column(
        t.schema.get_field_index("units"), "units", pa.array(ids_col, pa.list_(pa.uint16()))
    )
    return t.set_column(
        t.schema.get_field_index("durations"), "durations", pa.array(dur_col, pa.list_(pa.uint16()))
    )


def encode_dataset(src: Path, out: Path, model_bytes: bytes, progress=None) -> dict:
    """Encode every shard of the k-means units at `src` into `out` with the SentencePiece model
    `model_bytes` (written as `out/unigram.model`); the meta is written last.  Returns it.

    The one writer of unigram units: `slmscale unigram` (a model trained on `src`) and the demo's
    benchmarks (a model trained on another dataset) make identical meta keys."""
    import sentencepiece as spm

    from slmscale.audio.shards import count_units

    meta = load_meta(src)
    model_path = out / "unigram.model"
    write_bytes_atomic(model_path, model_bytes)
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    paths = shard_paths(src)
    for path in paths:
        t = pq.read_table(path, schema=UNITS_SCHEMA)
        write_table_atomic(_encode_table(t, sp), out / path.name)
        if progress is not None:
            progress.update(1)
    write_table_atomic(read_rejects(src), out / REJECTS_FILE)
    new_meta = {
        **meta,
        "n_units": sp.get_piece_size(),
        "vocab_size": sp.get_piece_size(),
        "unigram_model": str(model_path.resolve()),
        "unigram_sha256": sha256_file(model_path),
        "source_units": {"path": str(src.resolve()), "meta_hash": dataset_digest(src)},
        "package_version": __version__,
        "counts": count_units(out, len(paths)) if paths else {},
        SHARD_DIGESTS: shard_digests(out),
    }
    write_json_atomic(out / META_FILE, new_meta)
    return new_meta


def check_source(src: Path, out: Path) -> dict:
    """The meta of k-means units that can be unigram-encoded into `out` (a UserError if not)."""
    meta = load_meta(src)
    if meta.get("unigram_sha256"):
        raise UserError(f"--units {src}: already unigram units; give the k-means units dataset")
    k = int(meta["n_units"])
    if k > MAX_UNITS:
        raise UserError(f"--units {src}: K={k} is more than unigram supports ({MAX_UNITS})")
    if src.resolve() == out.resolve():
        raise UserError(f"--out {out}: must differ from --units")
    return meta


def compress(units_dir: str | Path, out_dir: str | Path, vocab: int = 5000) -> dict:
    """Units dataset -> unigram units dataset at `out_dir` (+ `unigram.model`); returns a summary."""
    src, out = Path(units_dir), Path(out_dir)
    meta = check_source(src, out)
    if vocab > 65535:
        raise UserError(f"--vocab {vocab}: ids must fit uint16")
    model_bytes = train_unigram(src, int(meta["n_units"]), vocab)
    n_shards = len(shard_paths(src))
    with Progress(n_shards, "unigram: encoding shards", " shards") as progress:
        new_meta = encode_dataset(src, out, model_bytes, progress)
    return {"out": str(out), "meta": new_meta, "source_counts": meta.get("counts", {})}


def decode_units(model_path: str | Path, ids: list[int]) -> list[int]:
    """Unigram piece ids -> the original k-means units."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    return text_to_units("".join(sp.id_to_piece(i) for i in ids))
