"""The token store: one shuffled, packed token file per units dataset (or mixture), K and seed.

Why: a trial used to stream its U_D unique tokens out of the Parquet shards into a pool of its
own, so every trial start decoded the whole corpus and every U_D wrote another copy.  Here the
training tokens live once, in a fixed order, and a trial's U_D unique tokens are the first U_D
tokens of that order: a file offset, ready in milliseconds, and smaller budgets nest in larger
ones (the nanoGPT `train.bin` / Megatron indexed-dataset shape).

Order.  Every training utterance (`units.is_training_split`) becomes `BOS units EOS`.  Each source's
utterances are shuffled with the seed (the generator a single-source pool always used, so a
one-source prefix is byte-identical to the old per-trial pool).  The sources are then merged by
a weighted round robin: the next utterance comes from the source whose tokens-so-far / weight is
smallest.  So every prefix holds each source's declared share to within one utterance per
source, at 4M tokens as at 4B.  Weights are the sources' sizes by default (the union of the
corpora, so every source runs out at the end together) or the spec's explicit `weight`s; with
explicit weights a source that runs out passes its share to the others (`allocate`).

Layout of `<dir>/store-<key>/`: `tokens.bin` (the training tokens, raw uint16 when K + 3 specials
fit, else uint32), `test.bin` (each source's `test` split, packed the same way, shard order),
`utterances.npy` (store offset of every utterance, plus the end), `utt_source.npy` (its source),
and `index.json` (format, dtype, counts, per-source ranges and weights, and each shard's name,
size, mtime and SHA-256).  It is built in a temporary directory and renamed into place, under a
file lock so that concurrent trials and ranks wait for one builder (`ensure_store`).

Trust.  A store is used only if its index is complete and matches the sources: same shard names,
and each shard either has the recorded size and mtime or, if not, the recorded SHA-256 (a copied
dataset is re-hashed, not rebuilt).  A store whose shards changed is rebuilt, with a line on
stderr.  Files written through memory maps are preallocated (posix_fallocate), so a full disk is
an ENOSPC error naming the path and the space needed (never SIGBUS), and the partial store is
removed.

Pure core: numpy, pyarrow and filelock; no Ray, no MLflow.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from filelock import FileLock

from slmscale import units as units_io
from slmscale.errors import UserError
from slmscale.model import special_token_ids

FORMAT = 2  # bump when a store's bytes for the same inputs change (2: dev*/valid* held out)
ENV_CACHE = "SLMSCALE_CACHE"  # stores live under $SLMSCALE_CACHE/stores when set
STORES_DIR = "_token_stores"  # default home: beside the (first) units dataset
TEST_SPLIT = "test"
INDEX_FILE = "index.json"
TOKENS_FILE = "tokens.bin"
TEST_FILE = "test.bin"
UTTS_FILE = "utterances.npy"
UTT_SOURCE_FILE = "utt_source.npy"
_BATCH_ROWS = 1024  # Parquet rows decoded at a time: bounds memory whatever the shard size


class StoreSpaceError(UserError):
    """The disk under the store filled up; the message names the path and the space needed."""


def token_dtype(n_units: int) -> np.dtype:
    """uint16 when the units and PAD/BOS/EOS fit (K + 3 <= 65,536), else uint32."""
    top = special_token_ids(n_units)["eos"]
    return np.dtype(np.uint16) if top <= np.iinfo(np.uint16).max else np.dtype(np.uint32)


def store_bytes(train_tokens: float, test_tokens: float, n_utterances: float, n_units: int) -> int:
    """Disk use of a store: the tokens once plus 8 + 2 bytes of index per training utterance."""
    item = token_dtype(n_units).itemsize
    return int(item * (train_tokens + test_tokens) + 10 * (n_utterances + 1) + 4096)


def mixture_weights(declared: list[float | None], tokens: list[float]) -> list[float]:
    """Normalised mixture weights: the declared ones, or (all None) each source's size."""
    if all(w is None for w in declared):
        raw = [float(t) for t in tokens]
    elif any(w is None for w in declared):
        raise UserError("units: give a weight to every source or to none (none: by size)")
    else:
        raw = [float(w) for w in declared]
    total = sum(raw)
    if total <= 0:
        raise UserError("units: the sources hold no training tokens")
    return [r / total for r in raw]


def holds_until(weights: list[float], capacity: list[float]) -> float:
    """Largest prefix at which every source still has its declared share (then one runs out)."""
    return min((c / w for c, w in zip(capacity, weights, strict=True) if w > 0), default=0.0)


def allocate(total: int, weights: list[float], capacity: list[int]) -> list[int]:
    """Tokens of each source in a prefix of `total` (to within one utterance per source).

    Largest remainder by weight, never more than a source holds; what a source that has run
    out cannot give is shared by the others by weight, as the store's merge does.
    """
    if total > sum(capacity):
        raise UserError(
            f"data: {total:,} unique tokens requested but the sources hold {sum(capacity):,}"
        )
    shares = [0] * len(weights)
    open_ = [i for i, c in enumerate(capacity) if c > 0]
    remaining = total
    while remaining > 0:
        w = sum(weights[i] for i in open_)
        exact = {i: remaining * weights[i] / w for i in open_}
        give = {i: min(math.floor(exact[i]), capacity[i] - shares[i]) for i in open_}
        left = remaining - sum(give.values())
        for i in sorted(open_, key=lambda i: exact[i] - math.floor(exact[i]), reverse=True):
            if left == 0:
                break
            if shares[i] + give[i] < capacity[i]:
                give[i] += 1
                left -= 1
        for i in open_:
            shares[i] += give[i]
        remaining = total - sum(shares)
        open_ = [i for i in open_ if shares[i] < capacity[i]]
    return shares


# --- where stores live and what names them ---------------------------------------------------


def default_store_dir(data: list[dict]) -> Path:
    """$SLMSCALE_CACHE/stores when set, else `_token_stores/` inside the first units dataset
    (so on a cluster the store sits on the shared storage the units live on)."""
    root = os.environ.get(ENV_CACHE)
    if root:
        return Path(root) / "stores"
    return Path(data[0]["path"]) / STORES_DIR


def _fallback_dir() -> Path:
    """Where stores go when the units dataset's folder is read-only and no cache is set."""
    return Path(tempfile.gettempdir()) / "slmscale-stores"


def _store_dirs(data: list[dict], store_dir: str | Path | None) -> list[Path]:
    if store_dir is not None:
        return [Path(store_dir)]
    if os.environ.get(ENV_CACHE):
        return [default_store_dir(data)]
    return [default_store_dir(data), _fallback_dir()]


def _writable_dir(dirs: list[Path], log) -> Path:
    """The first of `dirs` that can be created and written (a lock file goes there)."""
    for i, d in enumerate(dirs):
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            why = exc.strerror
        else:
            if os.access(d, os.W_OK | os.X_OK):
                return d
            why = "not writable"
        if i + 1 < len(dirs):
            log(f"token store: {d} is {why}; using {dirs[i + 1]} (set {ENV_CACHE} to choose)")
        else:
            raise UserError(f"{d}: cannot hold the token store ({why}); set {ENV_CACHE}")
    raise AssertionError("no store folder candidates")


def _source_identity(src: dict, single: bool) -> dict:
    # One source: its weight cannot change anything, so it does not split stores.
    return {
        "path": str(Path(src["path"]).resolve()),
        "meta_sha256": units_io.sha256_file(units_io.meta_path(src["path"])),
        "datasets": sorted(src["datasets"]) if src.get("datasets") is not None else None,
        "weight": None if single else src.get("weight"),
    }


def store_key(data: list[dict], n_units: int, seed: int) -> str:
    """Hash of what fixes the store's bytes: sources (path, meta.json, dataset filter, weight),
    K and the seed.  The shards' content is checked against the index on every open."""
    blob = {
        "format": FORMAT,
        "sources": [_source_identity(s, len(data) == 1) for s in data],
        "n_units": int(n_units),
        "seed": int(seed),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:20]


def _lineage(data: list[dict], n_units: int, seed: int) -> str:
    """The store's key without the datasets' content: stores that share it are versions of one
    another (the units were re-tokenized or extended), and only the newest is kept."""
    blob = {
        "sources": [{**_source_identity(s, len(data) == 1), "meta_sha256": None} for s in data],
        "n_units": int(n_units),
        "seed": int(seed),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:20]


def _remove_superseded(base: Path, key: str, lineage: str, log) -> None:
    """Delete older versions of a store just built (same sources, older content)."""
    for other in base.glob("store-*"):
        index = _read_index(other) if other.is_dir() else None
        if index and index.get("lineage") == lineage and index.get("key") != key:
            aside = other.with_name(f".{other.name}.old-{uuid.uuid4().hex[:8]}")
            try:
                os.replace(other, aside)
            except OSError:
                continue
            shutil.rmtree(aside, ignore_errors=True)
            log(f"token store: removed {other} (built from an older version of these units)")


def _shard_stats(root: str | Path) -> list[dict]:
    return [
        {"name": p.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        for p in units_io.shard_paths(root)
        for st in [p.stat()]
    ]


def _stale_reason(index: dict, data: list[dict]) -> str | None:
    """Why the store's recorded shards no longer match the sources (None: they match).

    Size and mtime equal: trusted (as git's index does).  Either differs: the shard is hashed
    and compared with the recorded SHA-256, so a copied dataset is still recognised.
    """
    for src, rec in zip(data, index["sources"], strict=True):
        root = Path(src["path"])
        now = _shard_stats(root)
        if [s["name"] for s in now] != [s["name"] for s in rec["shards"]]:
            return f"{root}: shards added or removed since the token store was built"
        for cur, old in zip(now, rec["shards"], strict=True):
            if (cur["size"], cur["mtime_ns"]) == (old["size"], old["mtime_ns"]):
                continue
            if (
                cur["size"] != old["size"]
                or units_io.sha256_file(root / cur["name"]) != old["sha256"]
            ):
                return f"{root / cur['name']}: changed since the token store was built"
    return None


# --- the store as trials read it ---------------------------------------------------------------


def _map(path: Path, dtype: np.dtype, n: int) -> np.ndarray:
    if n == 0:
        return np.zeros(0, dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(n,))


@dataclass
class TokenStore:
    """An opened, verified store: memory maps of its tokens and its index."""

    path: Path
    index: dict
    tokens: np.ndarray  # training tokens in store order (read-only memory map)
    test_tokens: np.ndarray  # every source's test split, source after source
    built_here: bool = False  # this call built it (tests: nobody builds twice)

    @property
    def n_tokens(self) -> int:
        return int(self.index["n_tokens"])

    @property
    def weights(self) -> list[float]:
        return [float(s["mixture_weight"]) for s in self.index["sources"]]

    @property
    def capacity(self) -> list[int]:
        return [int(s["tokens"]) for s in self.index["sources"]]

    def prefix(self, unique_tokens: int) -> np.ndarray:
        """The first U_D tokens: a trial's unique training tokens (a view, nothing is copied)."""
        unique_tokens = int(unique_tokens)
        if not 0 <= unique_tokens <= self.n_tokens:
            raise UserError(
                f"data: {unique_tokens:,} unique tokens requested but the sources hold "
                f"{self.n_tokens:,} training tokens"
            )
        return self.tokens[:unique_tokens]

    def test(self, in_test: list[bool]) -> np.ndarray:
        """The test tokens of the sources with `in_test`, in source order (a plain array view
        of the memory map: cutting it into many windows then costs no memmap bookkeeping)."""
        parts = [
            np.asarray(self.test_tokens[s["test_range"][0] : s["test_range"][1]])
            for s, keep in zip(self.index["sources"], in_test, strict=True)
            if keep
        ]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts) if parts else np.zeros(0, self.tokens.dtype)

    def source_tokens(self, n: int) -> np.ndarray:
        """Tokens of each source among the first `n` tokens of the store."""
        starts = np.load(self.path / UTTS_FILE, mmap_mode="r")
        source = np.load(self.path / UTT_SOURCE_FILE, mmap_mode="r")
        k = int(np.searchsorted(starts, n, side="left"))  # utterances starting before n: [0, k)
        lengths = np.minimum(np.diff(starts[: k + 1]), n - starts[:k])
        counts = np.bincount(source[:k], weights=lengths, minlength=len(self.index["sources"]))
        return counts.astype(np.int64)


def _read_index(path: Path) -> dict | None:
    try:
        index = json.loads((path / INDEX_FILE).read_text())
    except (OSError, ValueError):
        return None
    return index if isinstance(index, dict) else None


def _open(path: Path, key: str, data: list[dict]) -> tuple[TokenStore | None, str | None]:
    """(store, None) if `path` holds a complete store for these sources; else (None, why)."""
    try:
        return _open_checked(path, key, data)
    except (KeyError, TypeError, ValueError, OSError) as exc:  # a damaged index: not trusted
        return None, f"{path}: unreadable index ({type(exc).__name__})"


def _open_checked(path: Path, key: str, data: list[dict]) -> tuple[TokenStore | None, str | None]:
    index = _read_index(path)
    if index is None:
        return None, None
    if (
        index.get("format") != FORMAT
        or index.get("key") != key
        or not index.get("complete")
        or len(index.get("sources", [])) != len(data)
    ):
        return None, f"{path}: incomplete or of another format"
    dtype = np.dtype(index["dtype"])
    n, n_test = int(index["n_tokens"]), int(index["n_test_tokens"])
    try:
        sizes = [(path / TOKENS_FILE).stat().st_size, (path / TEST_FILE).stat().st_size]
    except OSError:
        return None, f"{path}: token files missing"
    if sizes != [n * dtype.itemsize, n_test * dtype.itemsize]:
        return None, f"{path}: token files of the wrong size"
    why = _stale_reason(index, data)
    if why is not None:
        return None, why
    tokens = _map(path / TOKENS_FILE, dtype, n)
    test = _map(path / TEST_FILE, dtype, n_test)
    return TokenStore(path, index, tokens, test), None


def open_store(
    data: list[dict], n_units: int, seed: int, store_dir: str | Path | None = None
) -> TokenStore | None:
    """The ready store for these sources, or None; reads no Parquet shard."""
    _check_sources(data)
    key = store_key(data, n_units, seed)
    for base in _store_dirs(data, store_dir):
        store, _ = _open(base / f"store-{key}", key, data)
        if store is not None:
            return store
    return None


def _check_sources(data: list[dict]) -> None:
    if not data:
        raise UserError("data: no units datasets")
    for src in data:
        if not units_io.is_units_dataset(src["path"]):
            raise UserError(
                f"{src['path']}: units dataset not found; run `slmscale tokenize` first"
            )


def ensure_store(
    data: list[dict],
    n_units: int,
    seed: int,
    store_dir: str | Path | None = None,
    log=None,
) -> TokenStore:
    """The store for these sources (`data`: path, weight, datasets), built if need be.

    Safe to call from every trial and every rank at once: the first takes a file lock beside
    the store and builds it; the others wait on the lock, then open what it built.
    """
    log = log or _stderr
    store = open_store(data, n_units, seed, store_dir)
    if store is not None:
        return store
    key = store_key(data, n_units, seed)
    base = _writable_dir(_store_dirs(data, store_dir), log)
    path = base / f"store-{key}"
    lock = FileLock(str(base / f".store-{key}.lock"))
    try:
        lock.acquire(timeout=0)
    except TimeoutError:
        log(f"token store {path}: another process is building it; waiting")
        lock.acquire()
    try:
        store, why = _open(path, key, data)  # built while we waited
        if store is not None:
            return store
        if why:
            log(f"token store: rebuilding ({why})")
        _build(path, key, data, n_units, seed, log)
        store, why = _open(path, key, data)
        if store is None:
            raise UserError(f"{path}: the token store just built does not verify ({why})")
        store.built_here = True
    finally:
        lock.release()
    _remove_superseded(base, key, _lineage(data, n_units, seed), log)
    remove_old_pools(log)
    return store


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- building ----------------------------------------------------------------------------------


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


def _build(path: Path, key: str, data: list[dict], n_units: int, seed: int, log) -> None:
    """Build the store into a temporary folder beside `path`, then rename it into place."""
    base = path.parent
    for stale in base.glob(f".{path.name}.tmp-*"):  # left by a killed build (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = base / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    need = 0
    try:
        tmp.mkdir()
        dtype, ids = token_dtype(n_units), special_token_ids(n_units)
        roots = [Path(s["path"]) for s in data]
        datasets = [s.get("datasets") for s in data]
        before = [_shard_stats(r) for r in roots]
        scanned = [_lengths(r, d) for r, d in zip(roots, datasets, strict=True)]
        train_len = [t for t, _ in scanned]
        capacity = [int(t.sum()) + 2 * len(t) for t in train_len]
        test_cap = [int(t.sum()) + 2 * len(t) for _, t in scanned]
        n, n_test, n_utts = sum(capacity), sum(test_cap), sum(len(t) for t in train_len)
        if n == 0:
            raise UserError(f"{roots[0]}: no training utterances (every row is in split 'test')")
        declared = [s.get("weight") for s in data] if len(data) > 1 else [None]
        weights = mixture_weights(declared, capacity)
        need = store_bytes(n, n_test, n_utts, n_units)
        log(
            f"token store: building {path} ({n:,} training tokens from {len(data)} source(s), "
            f"{_gib(need)})"
        )
        offsets, starts, utt_source = _merge_order(train_len, weights, seed)
        _fallocate(tmp / TOKENS_FILE, n * dtype.itemsize)
        _fallocate(tmp / TEST_FILE, n_test * dtype.itemsize)
        np.save(tmp / UTTS_FILE, starts)
        np.save(tmp / UTT_SOURCE_FILE, utt_source.astype(np.uint16))
        del starts, utt_source
        out = np.memmap(tmp / TOKENS_FILE, dtype=dtype, mode="r+", shape=(n,))
        test = (
            np.memmap(tmp / TEST_FILE, dtype=dtype, mode="r+", shape=(n_test,)) if n_test else None
        )
        test_at = 0
        sources = []
        for i, (root, ds) in enumerate(zip(roots, datasets, strict=True)):
            first, test_start = 0, test_at
            for col, is_test in _batches(root, ds):
                rows = np.flatnonzero(~is_test)
                _scatter(out, col, rows, offsets[i][first : first + len(rows)], ids)
                first += len(rows)
                trows = np.flatnonzero(is_test)
                if len(trows):
                    offs = col.offsets.to_numpy().astype(np.int64)
                    size = offs[trows + 1] - offs[trows] + 2
                    at = test_at + np.cumsum(size) - size
                    _scatter(test, col, trows, at, ids)
                    test_at += int(size.sum())
            if first != len(train_len[i]) or _shard_stats(root) != before[i]:
                raise UserError(f"{root}: units dataset changed while the token store was built")
            shards = [{**s, "sha256": units_io.sha256_file(root / s["name"])} for s in before[i]]
            if _shard_stats(root) != before[i]:
                raise UserError(f"{root}: units dataset changed while the token store was built")
            sources.append(
                {
                    "path": str(root),
                    "datasets": ds,
                    "weight": declared[i] if len(data) > 1 else None,
                    "mixture_weight": weights[i],
                    "tokens": capacity[i],
                    "utterances": len(train_len[i]),
                    "test_tokens": test_cap[i],
                    "test_range": [test_start, test_at],
                    "meta_sha256": units_io.sha256_file(units_io.meta_path(root)),
                    "shards": shards,
                }
            )
        out.flush()
        del out
        if test is not None:
            test.flush()
            del test
        index = {
            "format": FORMAT,
            "key": key,
            "dtype": dtype.name,
            "n_units": int(n_units),
            "seed": int(seed),
            "n_tokens": n,
            "n_test_tokens": n_test,
            "n_utterances": n_utts,
            "mixture": "proportional" if all(w is None for w in declared) else "weights",
            "holds_until": holds_until(weights, capacity),
            "sources": sources,
            "lineage": _lineage(data, n_units, seed),
            "complete": True,
        }
        (tmp / INDEX_FILE).write_text(json.dumps(index, indent=1) + "\n")
        for f in tmp.iterdir():
            _fsync(f)
        _replace_dir(tmp, path)
        _fsync(base)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            free = _free_bytes(base)
            raise StoreSpaceError(
                f"{path}: no space left on device for the token store (needs "
                f"{_gib(need)}, {_gib(free)} free); free space or set {ENV_CACHE} to a larger disk"
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


def _gib(n: int | None) -> str:
    if n is None:
        return "? bytes"
    if n < 2**20:
        return f"{n:,} bytes"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


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


def remove_old_pools(log=None) -> None:
    """Delete per-trial pool files of earlier versions ($SLMSCALE_CACHE/pools or the system
    temp's slmscale-pools): stores replace them, and they could hold hundreds of GB."""
    root = os.environ.get(ENV_CACHE)
    old = Path(root) / "pools" if root else Path(tempfile.gettempdir()) / "slmscale-pools"
    files = list(old.glob("pool-*.npy")) if old.is_dir() else []
    if files:
        freed = sum(f.stat().st_size for f in files if f.is_file())
        for f in files:
            f.unlink(missing_ok=True)
        (log or _stderr)(
            f"token store: removed {len(files)} old pool file(s) in {old} ({_gib(freed)})"
        )
