"""Open the store for a trial's sources, building it first (once, under a file lock) if needed.

Safe to call from every trial and every rank at once: the first caller takes a file lock beside
the store and builds it; the others wait on the lock, then open what it built.  After a build,
older versions of the same units' store (same lineage) are removed.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path

from filelock import FileLock

from slmscale import units as units_io
from slmscale.errors import UserError
from slmscale.tokenstore.build import build
from slmscale.tokenstore.identity import lineage, store_key
from slmscale.tokenstore.location import store_dirs, writable_dir
from slmscale.tokenstore.reader import TokenStore, open_verified, read_index


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _check_sources(data: list[dict]) -> None:
    if not data:
        raise UserError("data: no units datasets")
    for src in data:
        if not units_io.is_units_dataset(src["path"]):
            raise UserError(
                f"{src['path']}: units dataset not found; run `slmscale tokenize` first"
            )


def open_store(
    data: list[dict], n_units: int, seed: int, store_dir: str | Path | None = None
) -> TokenStore | None:
    """The ready store for these sources, or None; reads no Parquet shard when the units'
    meta records their content digests (as `slmscale tokenize` writes it)."""
    _check_sources(data)
    key = store_key(data, n_units, seed)
    for base in store_dirs(data, store_dir):
        store, _ = open_verified(base / f"store-{key}", key, data)
        if store is not None:
            return store
    return None


def ensure_store(
    data: list[dict],
    n_units: int,
    seed: int,
    store_dir: str | Path | None = None,
    log=None,
) -> TokenStore:
    """The store for these sources (`data`: path, weight, datasets), built if need be."""
    log = log or _stderr
    store = open_store(data, n_units, seed, store_dir)
    if store is not None:
        return store
    key = store_key(data, n_units, seed)
    base = writable_dir(store_dirs(data, store_dir), log)
    path = base / f"store-{key}"
    lock = FileLock(str(base / f".store-{key}.lock"))
    try:
        lock.acquire(timeout=0)
    except TimeoutError:
        log(f"token store {path}: another process is building it; waiting")
        lock.acquire()
    try:
        store, why = open_verified(path, key, data)  # built while we waited
        if store is not None:
            return store
        if why:
            log(f"token store: rebuilding ({why})")
        build(path, key, data, n_units, seed, log)
        store, why = open_verified(path, key, data)
        if store is None:
            raise UserError(f"{path}: the token store just built does not verify ({why})")
        store.built_here = True
    finally:
        lock.release()
    _remove_superseded(base, key, lineage(data, n_units, seed), log)
    return store


def _remove_superseded(base: Path, key: str, lineage_: str, log) -> None:
    """Delete older versions of a store just built (same sources, older content)."""
    for other in base.glob("store-*"):
        index = read_index(other) if other.is_dir() else None
        if index and index.get("lineage") == lineage_ and index.get("key") != key:
            aside = other.with_name(f".{other.name}.old-{uuid.uuid4().hex[:8]}")
            try:
                os.replace(other, aside)
            except OSError:
                continue
            shutil.rmtree(aside, ignore_errors=True)
            log(f"token store: removed {other} (built from an older version of these units)")


def build_store_for_units(root: str | Path, seed: int = 0, log=None) -> TokenStore | None:
    """The one-source store of a units dataset (its K, the given seed): `slmscale tokenize`
    builds it at the end so the first trial on these units finds it ready.  None when the
    dataset holds no training utterances (e.g. a benchmark's test split)."""
    meta = units_io.load_meta(root)
    counts = meta.get("counts")
    if isinstance(counts, dict) and not any(
        int(c.get("utterances", c.get("units", 0)) or 0)
        for splits in counts.values()
        for split, c in splits.items()
        if units_io.is_training_split(split)
    ):
        return None
    return ensure_store([{"path": str(root)}], units_io.n_units(meta), seed, log=log)
