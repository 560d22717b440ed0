"""Building a store: scan the sources' lengths, fix the order, scatter the tokens, write the index.

Order.  Every training utterance (`units.is_training_split`) becomes `BOS units EOS`.  Each source's
utterances are shuffled with the seed (the generator a single-source pool always used, so a
one-source prefix is byte-identical to the old per-trial pool).  The sources are then merged by
a weighted round robin: the next utterance comes from the source whose tokens-so-far / weight is
smallest.  So every prefix holds each source's declared share to within one utterance per
source, at 4M tokens as at 4B.

The store is built in a temporary folder beside its final name and renamed into place; the
shards are read in batches (`_BATCH_ROWS` rows), never a whole column at once.  Files written
through memory maps are preallocated (posix_fallocate), so a full disk is an ENOSPC error naming
the path and the space needed (never SIGBUS), and the partial store is removed.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from slmscale import units as units_io
from slmscale.errors import UserError
from slmscale.model import special_token_ids
from slmscale.tokenstore.identity import FORMAT, lineage, shard_stats
from slmscale.tokenstore.location import ENV_CACHE
from slmscale.tokenstore.mixture import holds_until, mixture_weights, store_bytes, token_dtype
from slmscale.tokenstore.reader import (
    INDEX_FILE,
    TEST_FILE,
    TOKENS_FILE,
    UTT_SOURCE_FILE,
    UTTS_FILE,
)
from slmscale.units_digest import shard_digests

TEST_SPLIT = "test"
_BATCH_ROWS = 1024  # Parquet rows decoded at a time: bounds memory whatever the shard size


class StoreSpaceError(UserError):
    """The disk under the store filled up; the message names the path and the space needed."""


def _batches(root: Path, datasets: list[str] | None) -> Iterator[tuple[pa.ListArray, np.ndarray]]:
    """(units, is_test) of a units dataset, batch by batch in shard order; never all at once."""
    wanted = None if datasets is None else pa.array(datasets, pa.string())
    for shard in units_io.shard_paths(root):
        for batch in pq.ParquetFile(shard).iter_batches(
            batch_size=_BATCH_ROWS, columns=["units", "split", "dataset"], use_threads=False
        ):
            if wanted is not None:
                batch = batch.filter(pc.is_in(batch.column("dataset"), wanted))
            if batch.num_rows:  # held-out splits other than test (dev-clean, ...) are dropped
                splits = pc.unique(batch.column("split")).to_pylist()
                held = [s for s in splits if s != TEST_SPLIT and not units_io.is_training_split(s)]
                if held:
                    dropped = pc.is_in(batch.column("split"), pa.array(held, pa.string()))
                    batch = batch.filter(pc.invert(dropped))
            if batch.num_rows:
                is_test = pc.equal(batch.column("split"), TEST_SPLIT)
                yield batch.column("units"), is_test.to_numpy(zero_copy_only=False)


def _lengths(root: Path, datasets: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """Units per training and per test utterance, in shard order."""
    train, test = [], []
    for col, is_test in _batches(root, datasets):
        n = pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(np.int64)
        train.append(n[~is_test])
        test.append(n[is_test])
    empty = np.zeros(0, np.int64)
    return (np.concatenate(train) if train else empty), (np.concatenate(test) if test else empty)


def _merge_order(lengths: list[np.ndarray], weights: list[float], seed: int):
    """Store offset of every training utterance (per source, shard order) and the store order.

    Within a source: the seed's permutation.  Across sources: by (tokens of the source before
    the utterance) / weight, i.e. always the source furthest behind its share.
    """
    keys, src_of, idx_of, size_of = [], [], [], []
    for i, (n, w) in enumerate(zip(lengths, weights, strict=True)):
        order = np.random.default_rng([seed, 1, i]).permutation(len(n))
        size = n[order] + 2
        keys.append((np.cumsum(size) - size) / w if w > 0 else np.full(len(n), np.inf))
        src_of.append(np.full(len(n), i, np.uint16))
        idx_of.append(order)
        size_of.append(size)
    src = np.concatenate(src_of)
    merged = np.lexsort((src, np.concatenate(keys)))  # ties: the lower source index first
    src, idx = src[merged], np.concatenate(idx_of)[merged]
    size = np.concatenate(size_of)[merged]
    starts = np.concatenate([[0], np.cumsum(size)])
    offsets = []
    for i, n in enumerate(lengths):
        at = np.empty(len(n), np.int64)
        mine = src == i
        at[idx[mine]] = starts[:-1][mine]
        offsets.append(at)
    return offsets, starts, src


def _fallocate(path: Path, nbytes: int) -> None:
    """Create `path` with `nbytes` reserved on disk: a full disk fails here, not as a SIGBUS."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        if nbytes:
            os.posix_fallocate(fd, 0, nbytes)
    finally:
        os.close(fd)


def _scatter(out: np.ndarray, col: pa.ListArray, rows: np.ndarray, at: np.ndarray, ids) -> None:
    """Write rows `rows` of `col` as BOS units EOS at out[at]."""
    values = col.values.to_numpy(zero_copy_only=False)
    offsets = col.offsets.to_numpy().astype(np.int64)
    lo, n = offsets[rows], offsets[rows + 1] - offsets[rows]
    # every unit of the rows: its index in `values` and its position in `out`
    idx = np.arange(int(n.sum()), dtype=np.int64) + np.repeat(lo - (np.cumsum(n) - n), n)
    out[idx + np.repeat(at + 1 - lo, n)] = values[idx]
    out[at] = ids["bos"]
    out[at + 1 + n] = ids["eos"]


@dataclass
class _Plan:
    """What a build writes, from one scan of the sources' lengths."""

    roots: list[Path]
    datasets: list[list[str] | None]
    before: list[list[dict]]  # each source's shard stats when the scan began
    train_len: list[np.ndarray]
    capacity: list[int]  # training tokens per source (units + BOS + EOS)
    test_cap: list[int]
    declared: list[float | None]
    weights: list[float]

    @property
    def n(self) -> int:
        return sum(self.capacity)

    @property
    def n_test(self) -> int:
        return sum(self.test_cap)

    @property
    def n_utts(self) -> int:
        return sum(len(t) for t in self.train_len)


def _plan(data: list[dict]) -> _Plan:
    roots = [Path(s["path"]) for s in data]
    datasets = [s.get("datasets") for s in data]
    before = [shard_stats(r) for r in roots]
    scanned = [_lengths(r, d) for r, d in zip(roots, datasets, strict=True)]
    train_len = [t for t, _ in scanned]
    capacity = [int(t.sum()) + 2 * len(t) for t in train_len]
    test_cap = [int(t.sum()) + 2 * len(t) for _, t in scanned]
    if sum(capacity) == 0:
        raise UserError(f"{roots[0]}: no training utterances (every row is in split 'test')")
    declared = [s.get("weight") for s in data] if len(data) > 1 else [None]
    weights = mixture_weights(declared, capacity)
    return _Plan(roots, datasets, before, train_len, capacity, test_cap, declared, weights)


def _write_tokens(tmp: Path, plan: _Plan, n_units: int, seed: int) -> list[dict]:
    """tokens.bin, test.bin and the utterance index into `tmp`; returns each source's record."""
    dtype, ids = token_dtype(n_units), special_token_ids(n_units)
    offsets, starts, utt_source = _merge_order(plan.train_len, plan.weights, seed)
    _fallocate(tmp / TOKENS_FILE, plan.n * dtype.itemsize)
    _fallocate(tmp / TEST_FILE, plan.n_test * dtype.itemsize)
    np.save(tmp / UTTS_FILE, starts)
    np.save(tmp / UTT_SOURCE_FILE, utt_source.astype(np.uint16))
    del starts, utt_source
    out = np.memmap(tmp / TOKENS_FILE, dtype=dtype, mode="r+", shape=(plan.n,))
    test = None
    if plan.n_test:
        test = np.memmap(tmp / TEST_FILE, dtype=dtype, mode="r+", shape=(plan.n_test,))
    test_at, sources = 0, []
    for i, (root, ds) in enumerate(zip(plan.roots, plan.datasets, strict=True)):
        first, test_start = 0, test_at
        for col, is_test in _batches(root, ds):
            rows = np.flatnonzero(~is_test)
            _scatter(out, col, rows, offsets[i][first : first + len(rows)], ids)
            first += len(rows)
            trows = np.flatnonzero(is_test)
            if len(trows):
                offs = col.offsets.to_numpy().astype(np.int64)
                size = offs[trows + 1] - offs[trows] + 2
                _scatter(test, col, trows, test_at + np.cumsum(size) - size, ids)
                test_at += int(size.sum())
        if first != len(plan.train_len[i]) or shard_stats(root) != plan.before[i]:
            raise UserError(f"{root}: units dataset changed while the token store was built")
        sources.append(_source_record(plan, i, [test_start, test_at]))
    out.flush()
    if test is not None:
        test.flush()
    return sources


def _source_record(plan: _Plan, i: int, test_range: list[int]) -> dict:
    root = plan.roots[i]
    digests = shard_digests(root)
    if shard_stats(root) != plan.before[i]:
        raise UserError(f"{root}: units dataset changed while the token store was built")
    return {
        "path": str(root),
        "datasets": plan.datasets[i],
        "weight": plan.declared[i] if len(plan.roots) > 1 else None,
        "mixture_weight": plan.weights[i],
        "tokens": plan.capacity[i],
        "utterances": len(plan.train_len[i]),
        "test_tokens": plan.test_cap[i],
        "test_range": test_range,
        "digest": units_io.dataset_digest(root),
        "shards": [{**s, "digest": digests[s["name"]]} for s in plan.before[i]],
    }


def build(path: Path, key: str, data: list[dict], n_units: int, seed: int, log) -> None:
    """Build the store into a temporary folder beside `path`, then rename it into place."""
    base = path.parent
    for stale in base.glob(f".{path.name}.tmp-*"):  # left by a killed build (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = base / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    need = 0
    try:
        tmp.mkdir()
        plan = _plan(data)
        need = store_bytes(plan.n, plan.n_test, plan.n_utts, n_units)
        log(
            f"token store: building {path} ({plan.n:,} training tokens from {len(data)} "
            f"source(s), {gib(need)})"
        )
        sources = _write_tokens(tmp, plan, n_units, seed)
        index = {
            "format": FORMAT,
            "key": key,
            "dtype": token_dtype(n_units).name,
            "n_units": int(n_units),
            "seed": int(seed),
            "n_tokens": plan.n,
            "n_test_tokens": plan.n_test,
            "n_utterances": plan.n_utts,
            "mixture": "proportional" if all(w is None for w in plan.declared) else "weights",
            "holds_until": holds_until(plan.weights, plan.capacity),
            "sources": sources,
            "lineage": lineage(data, n_units, seed),
            "complete": True,
        }
        (tmp / INDEX_FILE).write_text(json.dumps(index, indent=1) + "\n")
        for f in tmp.iterdir():
            _fsync(f)
        _replace_dir(tmp, path)
        _fsync(base)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreSpaceError(
                f"{path}: no space left on device for the token store (needs {gib(need)}, "
                f"{gib(_free_bytes(base))} free); free space or set {ENV_CACHE} to a larger disk"
            ) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace_dir(tmp: Path, path: Path) -> None:
    """Rename the finished store into place; an old (stale) store is moved aside and removed
    (readers that still map its files keep them until they close)."""
    if path.exists():
        aside = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(path, aside)
        shutil.rmtree(aside, ignore_errors=True)
    os.replace(tmp, path)


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def gib(n: int | None) -> str:
    if n is None:
        return "? bytes"
    if n < 2**20:
        return f"{n:,} bytes"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"
