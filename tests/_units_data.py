"""Synthetic units datasets and the reference (in-memory) pool the token store must reproduce."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from slmscale import units as units_io
from slmscale.model import special_token_ids
from slmscale.tokenstore import allocate
from slmscale.units_digest import SHARD_DIGESTS, shard_digests

N_UNITS = 50


# --- references: slow, obvious versions of what the store must hold -------------------------


def ref_utterances(root, datasets, test):
    table = units_io.read_units(root, datasets=datasets, columns=["units", "split", "dataset"])
    if test:
        table = table.filter(pc.equal(table["split"], "test"))
    else:  # training: every split but held-out ones (dev is left out, test is the test set)
        keep = [units_io.is_training_split(s) for s in table["split"].to_pylist()]
        table = table.filter(pa.array(keep))
    col = table["units"].combine_chunks()
    values = col.values.to_numpy(zero_copy_only=False).astype(np.uint16, copy=False)
    offsets = col.offsets.to_numpy()
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(col))]


def ref_pack(utterances, n_units):
    ids = special_token_ids(n_units)
    if not utterances:
        return np.zeros(0, dtype=np.uint16)
    bos, eos = np.array([ids["bos"]], np.uint16), np.array([ids["eos"]], np.uint16)
    parts = []
    for u in utterances:
        parts.extend((bos, u, eos))
    return np.concatenate(parts)


def reference_store(data, n_units, seed):
    """The whole store, greedily: next utterance from the source furthest behind its share."""
    train = [ref_utterances(s["path"], s.get("datasets"), test=False) for s in data]
    cap = [sum(len(u) + 2 for u in t) for t in train]
    declared = [s.get("weight") for s in data] if len(data) > 1 else [None]
    raw = [float(c) for c in cap] if all(w is None for w in declared) else declared
    w = [r / sum(raw) for r in raw]
    queues = [
        [utts[j] for j in np.random.default_rng([seed, 1, i]).permutation(len(utts))]
        for i, utts in enumerate(train)
    ]
    emitted, taken, out = [0] * len(train), [0] * len(train), []
    while True:
        left = [i for i in range(len(train)) if taken[i] < len(queues[i])]
        if not left:
            break
        i = min(left, key=lambda i: (emitted[i] / w[i], i))
        u = queues[i][taken[i]]
        out.append(u)
        emitted[i] += len(u) + 2
        taken[i] += 1
    return ref_pack(out, n_units)


def reference_pool(data, unique_tokens, n_units, seed):
    """The per-trial pool of earlier versions (one source: the store's prefix, byte for byte)."""
    train = [ref_utterances(s["path"], s.get("datasets"), test=False) for s in data]
    capacity = [sum(len(u) + 2 for u in t) for t in train]
    shares = allocate(unique_tokens, [float(s.get("weight", 1.0)) for s in data], capacity)
    parts = []
    for i, (utts, share) in enumerate(zip(train, shares, strict=True)):
        order = np.random.default_rng([seed, 1, i]).permutation(len(utts))
        lengths = np.array([len(utts[j]) + 2 for j in order], dtype=np.int64)
        n_utts = int(np.searchsorted(np.cumsum(lengths), share, side="left")) + 1
        parts.append(ref_pack([utts[j] for j in order[:n_utts]], n_units)[:share])
    return np.concatenate(parts) if parts else np.zeros(0, np.uint16)


# --- synthetic units datasets with several shards, mixed splits and datasets -----------------


def write_units(root, *, shards, rows_per_shard, length=(0, 40), seed=0, datasets=("a", "b")):
    """A units dataset whose shards interleave train/dev/test rows of several datasets."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    n_tokens = 0
    for s in range(shards):
        rows = {name: [] for name in units_io.UNITS_SCHEMA.names}
        for r in range(rows_per_shard):
            u = rng.integers(0, N_UNITS, int(rng.integers(*length)))
            n_tokens += len(u)
            rows["utterance_id"].append(f"u{s}-{r}")
            rows["dataset"].append(datasets[r % len(datasets)])
            rows["split"].append(["train", "train", "dev", "test"][int(rng.integers(4))])
            rows["units"].append(u.tolist())
            rows["durations"].append([1] * len(u))
            rows["n_frames"].append(len(u))
            rows["seconds"].append(len(u) / 25)
            rows["source"].append("synthetic")
        table = pa.Table.from_pydict(rows, schema=units_io.UNITS_SCHEMA)
        units_io.write_table_atomic(table, root / f"shard-{s:05d}.parquet")
    meta = {"encoder": "synthetic", "n_units": N_UNITS, "kmeans_sha256": "x", "seed": seed}
    meta[SHARD_DIGESTS] = shard_digests(root)  # as `slmscale tokenize` records them
    units_io.write_json_atomic(root / units_io.META_FILE, meta)
    return n_tokens
