"""Builders shared by the tests/test_eval_*.py files: tiny benchmarks in their distributed layouts,
units datasets as `slmscale tokenize` writes them, and a bigram LM with known probabilities.

(No tests here; the name only lets pytest's default import mode find it next to the tests.)
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import torch

from slmscale import units as units_io
from slmscale.config import BenchmarkSpec
from slmscale.model import special_token_ids, vocab_size

K = 4  # units 0..3; PAD 4, BOS 5, EOS 6
SPECIAL = special_token_ids(K)
META = {
    "encoder": "logmel",
    "encoder_id": "test",
    "layer": None,
    "frame_rate": 100,
    "sample_rate": 16000,
    "kmeans_sha256": "abc",
    "n_units": K,
    "dedup": True,
    "unigram_sha256": None,
}
FINGERPRINT = units_io.tokenizer_fingerprint(META)

# Bigram probabilities p(next | prev) (rows: prev token id, columns: next token id).
# From BOS: p(0)=.25, p(1)=.5 so [0] sums higher than [1, 1, 1] but has the lower mean.
BOS_ROW = [0.25, 0.5, 0.125, 0.125, 0.0, 0.0, 0.0]
UNIT_ROW = {
    0: [0.1, 0.5, 0.2, 0.1, 0.0, 0.0, 0.1],
    1: [0.2, 0.5, 0.1, 0.1, 0.0, 0.0, 0.1],
    2: [0.3, 0.3, 0.1, 0.2, 0.0, 0.0, 0.1],
    3: [0.4, 0.1, 0.2, 0.2, 0.0, 0.0, 0.1],
}


def bigram_table() -> torch.Tensor:
    probs = torch.full((vocab_size(K), vocab_size(K)), 1.0 / vocab_size(K))
    probs[SPECIAL["bos"]] = torch.tensor(BOS_ROW)
    for u, row in UNIT_ROW.items():
        probs[u] = torch.tensor(row)
    return probs


def bigram_logp(seq: list[int]) -> float:
    """The hand computation: log p(seq) with BOS, chain rule over the bigram table."""
    prev, total = SPECIAL["bos"], 0.0
    for u in seq:
        total += math.log(bigram_table()[prev, u].item())
        prev = u
    return total


class BigramLM(torch.nn.Module):
    """logits[b, t] = log p(. | input_ids[b, t]): a causal LM whose probabilities we know."""

    def __init__(self):
        super().__init__()
        self.register_buffer("logp", bigram_table().log())

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.logp[input_ids])


# Pair outcomes under the bigram: sum / mean scores disagree on WIN and LOSE, agree on TIE.
WIN = ([0], [1, 1, 1])  # sum: pos higher (1); mean: neg higher (0)
LOSE = ([1, 1, 1], [0])  # sum: 0; mean: 1
TIE = ([2, 3], [2, 3])  # identical units: 0.5 under both


def write_units(
    path: Path,
    utterances: dict[str, list[int]],
    *,
    split: str = "dev",
    dataset: str = "bench",
    rejects: dict[str, str] | None = None,
    meta: dict | None = None,
) -> Path:
    """A units dataset as the tokenize stage writes it (meta.json, one shard, rejects)."""
    ids = list(utterances)
    n = len(ids)
    table = pa.table(
        {
            "utterance_id": ids,
            "dataset": [dataset] * n,
            "split": [split] * n,
            "units": [utterances[i] for i in ids],
            "durations": [[1] * len(utterances[i]) for i in ids],
            "n_frames": [len(utterances[i]) for i in ids],
            "seconds": [0.01 * len(utterances[i]) for i in ids],
            "source": [f"/data/{i}.wav" for i in ids],
        },
        schema=units_io.UNITS_SCHEMA,
    )
    units_io.write_table_atomic(table, path / "shard-00000.parquet")
    rej = rejects or {}
    rtable = pa.table(
        {
            "source": [f"/data/{s}.wav" for s in rej],
            "dataset": [dataset] * len(rej),
            "error": list(rej.values()),
        },
        schema=units_io.REJECTS_SCHEMA,
    )
    units_io.write_table_atomic(rtable, path / units_io.REJECTS_FILE)
    units_io.write_json_atomic(path / units_io.META_FILE, {**META, **(meta or {})})
    return path


def write_gold(folder: Path, rows: list[dict], *, shuffle_seed: int | None = None) -> None:
    """gold.csv (columns in a scrambled order) plus an empty wav per row."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    cols = sorted(rows[0], reverse=True)  # not the official order: columns are found by name
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(rows)
    with open(folder / "gold.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        (folder / f"{r['filename']}.wav").write_bytes(b"")


def sblimp_bench(
    tmp: Path, items: list[tuple[str, str, str, list]], *, shuffle_seed=None, split="dev"
):
    """items: (type, subtype, id, [(pos_units, neg_units) per voice]).  Returns (root, units)."""
    rows, utts = [], {}
    counter = 0
    for typ, sub, item_id, voices in items:
        for v, (pos, neg) in enumerate(voices):
            for correct, units in ((1, pos), (0, neg)):
                counter += 1
                # file names carry no order information (pairs come from gold.csv only)
                name = f"f{(counter * 7919) % 100003:05d}"
                rows.append(
                    {
                        "filename": name,
                        "type": typ,
                        "subtype": sub,
                        "id": item_id,
                        "voice": f"v{v}",
                        "correct": correct,
                        "transcription": f"{typ} {item_id} {correct}",
                    }
                )
                utts[name] = units
    root = tmp / "sblimp"
    write_gold(root / "syntactic" / split, rows, shuffle_seed=shuffle_seed)
    units = write_units(tmp / "sblimp_units", utts, split=split, dataset="sblimp")
    return root, units, rows


def cloze_bench(tmp: Path, stories: list[tuple], name="story_cloze"):
    """stories: (pos_units, neg_units) per story; TWIST naming <id>_correct/_incorrect.wav."""
    root = tmp / name
    root.mkdir(parents=True)
    utts = {}
    for i, (pos, neg) in enumerate(stories):
        for label, units in (("correct", pos), ("incorrect", neg)):
            (root / f"{i}_{label}.wav").write_bytes(b"")
            utts[f"{i}_{label}"] = units
    units = write_units(tmp / f"{name}_units", utts, split="test", dataset=name)
    return root, units


def spec(name: str, units: Path, root: Path, split="dev", score=None) -> BenchmarkSpec:
    return BenchmarkSpec(name=name, units=str(units), root=str(root), split=split, score=score)
