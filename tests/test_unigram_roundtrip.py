"""`slmscale unigram`: a new units dataset of SentencePiece pieces that decodes back exactly."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from slmscale.audio.unigram import compress, decode_units
from slmscale.cli import main
from slmscale.errors import UserError
from slmscale.units import (
    META_FILE,
    REJECTS_FILE,
    REJECTS_SCHEMA,
    UNITS_SCHEMA,
    read_rejects,
    read_units,
    tokenizer_name,
    write_json_atomic,
    write_table_atomic,
)

K = 30


def make_units(root, n_utts=120, seed=0):
    """A units dataset whose units follow a few recurring 'words', so pieces are worth learning."""
    rng = np.random.default_rng(seed)
    words = [rng.integers(0, K, size=rng.integers(2, 6)) for _ in range(15)]
    rows = []
    for i in range(n_utts):
        seq = np.concatenate([words[j] for j in rng.integers(0, len(words), 20)] + [[i % K]])
        keep = np.r_[True, seq[1:] != seq[:-1]]
        units = seq[keep].astype(np.uint16)
        durations = rng.integers(1, 5, size=len(units)).astype(np.uint16)
        rows.append(
            (
                f"u{i:03d}",
                "ls",
                "test" if i % 10 == 0 else "train",
                units,
                durations,
                int(durations.sum()),
                float(durations.sum()) / 25,
                f"/x/u{i}.flac",
            )
        )
    for shard in range(2):
        part = rows[shard::2]
        cols = list(zip(*part, strict=True))
        write_table_atomic(
            pa.table([list(c) for c in cols], schema=UNITS_SCHEMA),
            root / f"shard-{shard:05d}.parquet",
        )
    write_table_atomic(
        pa.table(
            {"source": ["/x/bad.flac"], "dataset": ["ls"], "error": ["empty file"]},
            schema=REJECTS_SCHEMA,
        ),
        root / REJECTS_FILE,
    )
    write_json_atomic(
        root / META_FILE,
        {
            "encoder": "hubert",
            "encoder_id": "tiny",
            "layer": 11,
            "frame_rate": 25.0,
            "sample_rate": 16000,
            "kmeans_path": "/k.npy",
            "kmeans_sha256": "ab",
            "kmeans_k": K,
            "n_units": K,
            "dedup": True,
            "unigram_model": None,
            "unigram_sha256": None,
            "source_units": None,
            "n_inputs": n_utts + 1,
            "n_rejects": 1,
            "counts": {},
        },
    )
    return rows


def test_unigram_round_trips_exactly(tmp_path):
    rows = make_units(tmp_path / "units")
    s = compress(tmp_path / "units", tmp_path / "uni", vocab=80)
    meta = s["meta"]
    assert meta["n_units"] == meta["vocab_size"] == 80
    assert meta["unigram_sha256"] and meta["source_units"]["path"] == str(
        (tmp_path / "units").resolve()
    )
    assert tokenizer_name(meta) == "unigram80"
    table = read_units(tmp_path / "uni")
    by_id = {r[0]: r for r in rows}
    total_units = total_pieces = 0
    for row in table.to_pylist():
        src = by_id[row["utterance_id"]]
        assert decode_units(meta["unigram_model"], row["units"]) == src[3].tolist()
        assert sum(row["durations"]) == row["n_frames"] == src[5]
        assert max(row["units"]) < 80
        total_units, total_pieces = total_units + len(src[3]), total_pieces + len(row["units"])
    assert total_pieces < 0.8 * total_units  # recurring words became pieces
    assert (
        meta["counts"]["ls"]["train"]["units"] + meta["counts"]["ls"]["test"]["units"]
        == total_pieces
    )
    assert read_rejects(tmp_path / "uni").num_rows == 1


def test_vocab_too_large_for_data_is_a_user_error(tmp_path):
    make_units(tmp_path / "units", n_utts=5)
    with pytest.raises(UserError, match="SentencePiece training failed"):
        compress(tmp_path / "units", tmp_path / "uni", vocab=5000)


def test_cli_unigram(tmp_path, capsys):
    make_units(tmp_path / "units")
    assert (
        main(
            [
                "unigram",
                "--units",
                str(tmp_path / "units"),
                "--out",
                str(tmp_path / "u"),
                "--vocab",
                "60",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Table 2" in out and "inputs 121 = tokenized 120 + rejected 1" in out
