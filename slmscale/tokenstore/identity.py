"""What names a store, and whether its recorded shards are still the sources' shards.

The key is the sources' content (`units.dataset_digest`: tokenizer identity and rows), their
dataset filters and weights, K, the seed and FORMAT: the same units in another folder, or
copied to a cluster, find the same store.  The lineage is the key without the content, by
path: stores that share it are older versions of the same units, replaced when a new one is
built.  Each open also checks the shards against the index: equal size and mtime are trusted
(as git's index does); otherwise the shard's content digest is compared with the recorded one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from slmscale import units as units_io
from slmscale.hashing import sha256_json
from slmscale.units_digest import shard_digest

FORMAT = 2  # bump when a store's bytes for the same inputs change (2: dev*/valid* held out)


def _selection(src: dict, single: bool) -> dict:
    # One source: its weight cannot change anything, so it does not split stores.
    return {
        "datasets": sorted(src["datasets"]) if src.get("datasets") is not None else None,
        "weight": None if single else src.get("weight"),
    }


def store_key(data: list[dict], n_units: int, seed: int) -> str:
    """Hash of what fixes the store's bytes: each source's content digest, dataset filter and
    weight, K, the seed and the format (no path: see the module docstring)."""
    single = len(data) == 1
    sources = [
        {"digest": units_io.dataset_digest(s["path"]), **_selection(s, single)} for s in data
    ]
    blob = {"format": FORMAT, "sources": sources, "n_units": int(n_units), "seed": int(seed)}
    return sha256_json(blob, 20)


def lineage(data: list[dict], n_units: int, seed: int) -> str:
    """The store's name without the datasets' content, by resolved path: stores that share it
    are versions of one another (the units were re-tokenized or extended); the newest is kept."""
    single = len(data) == 1
    sources = [
        {"path": str(Path(s["path"]).resolve()), "meta_sha256": None, **_selection(s, single)}
        for s in data
    ]
    blob = {"sources": sources, "n_units": int(n_units), "seed": int(seed)}
    # json.dumps' default separators, as stores built before content keys: their lineage holds
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:20]


def shard_stats(root: str | Path) -> list[dict]:
    return [
        {"name": p.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        for p in units_io.shard_paths(root)
        for st in [p.stat()]
    ]


def stale_reason(index: dict, data: list[dict]) -> str | None:
    """Why the store's recorded shards no longer match the sources (None: they match)."""
    for src, rec in zip(data, index["sources"], strict=True):
        root = Path(src["path"])
        now = shard_stats(root)
        if [s["name"] for s in now] != [s["name"] for s in rec["shards"]]:
            return f"{root}: shards added or removed since the token store was built"
        for cur, old in zip(now, rec["shards"], strict=True):
            if (cur["size"], cur["mtime_ns"]) == (old["size"], old["mtime_ns"]):
                continue
            if shard_digest(root / cur["name"]) != old.get("digest"):
                return f"{root / cur['name']}: changed since the token store was built"
    return None
