"""A tiny, valid, learnable units dataset for tests and benchmarks (pure core).

Utterances are walks of a sparse random Markov chain over K units, so a small LM's loss falls
well below log(K) within a few hundred steps.  The layout and meta.json follow the units contract
(slmscale.units), with train and test splits and per-split counts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from slmscale import units as units_io


def _walk(rng: np.random.Generator, nxt: np.ndarray, length: int) -> np.ndarray:
    out = np.empty(length, dtype=np.int64)
    out[0] = rng.integers(len(nxt))
    for i in range(1, length):
        out[i] = rng.choice(nxt[out[i - 1]])
    return out


def write_synthetic_units(
    root: str | Path,
    *,
    n_units: int = 20,
    n_train: int = 500,
    n_test: int = 40,
    length: tuple[int, int] = (8, 48),
    dataset: str = "synthetic",
    seed: int = 0,
    encoder: str = "synthetic",
) -> Path:
    """Write a units dataset of `n_train` + `n_test` utterances under `root`; return `root`."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    nxt = np.stack([rng.choice(n_units, size=3, replace=False) for _ in range(n_units)])
    rows: dict[str, list] = {name: [] for name in units_io.UNITS_SCHEMA.names}
    counts: dict[str, dict] = {}
    for split, n in (("train", n_train), ("test", n_test)):
        c = counts.setdefault(split, {"utterances": 0, "units": 0, "frames": 0, "seconds": 0.0})
        for i in range(n):
            u = _walk(rng, nxt, int(rng.integers(*length)))
            rows["utterance_id"].append(f"{dataset}-{split}-{i:05d}")
            rows["dataset"].append(dataset)
            rows["split"].append(split)
            rows["units"].append(u.tolist())
            rows["durations"].append([2] * len(u))
            rows["n_frames"].append(2 * len(u))
            rows["seconds"].append(2 * len(u) / 25.0)
            rows["source"].append(f"synthetic://{split}/{i}")
            c["utterances"] += 1
            c["units"] += len(u)
            c["frames"] += 2 * len(u)
            c["seconds"] += 2 * len(u) / 25.0
    table = pa.Table.from_pydict(rows, schema=units_io.UNITS_SCHEMA)
    units_io.write_table_atomic(table, root / "shard-00000.parquet")
    meta = {
        "encoder": encoder,
        "encoder_id": f"{encoder}-markov",
        "layer": None,
        "frame_rate": 25,
        "sample_rate": 16000,
        "kmeans_sha256": f"synthetic-{seed}-{n_units}",
        "n_units": n_units,
        "dedup": True,
        "counts": {dataset: counts},
    }
    units_io.write_json_atomic(root / units_io.META_FILE, meta)
    return root
