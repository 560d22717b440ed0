"""Training and test token streams from units datasets (pure core: numpy and pyarrow only).

How a trial's data is made (DESIGN.md "Grid spec", the paper's section 3):

1. Every training utterance (any split but `test`) becomes `BOS units EOS`.
2. Unique tokens: each source gets a share of U_D by its mixture weight (a source too small for
   its share gives the rest to the others).  Its utterances are shuffled with the trial's seed and
   concatenated; the first `share` tokens are kept.  The kept tokens of all sources, concatenated,
   are the *pool*: exactly U_D tokens, fixed by the seed.  Choosing them needs only utterance
   lengths; the pool is then written shard by shard into a memory-mapped `.npy` file (reused
   by every trial with the same data, U_D, seed and K), so no corpus ever sits in memory.
3. Passes: the pool is cut into `context`-token chunks; each pass visits every chunk once, in an
   order freshly shuffled for that pass.  The passes, concatenated and cut after exactly D tokens,
   are the training *stream*; it is cut into `context`-token windows (the last may be shorter).

The stream is addressed by token offset, so the position in the data is one integer
(tokens consumed): checkpoints store it and a resumed trial reads the very same windows.
The test set is the `test` split of the sources with `in_test`, packed the same way, unshuffled.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
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

TEST_SPLIT = "test"
IGNORE_INDEX = -100  # label of padding positions (torch cross-entropy's default ignore index)
# Token ids in memory: units (K <= 65,532) plus PAD/BOS/EOS fit in 16 bits, half of int32's
# footprint; batches are widened to int64 only when padded (pad_batch).
TOKEN_DTYPE = np.uint16
ENV_CACHE = "SLMSCALE_CACHE"  # where pool files live (default: the system temp directory)
POOL_FORMAT = 1  # bump when the pool's bytes for the same inputs change
_BATCH_ROWS = 1024  # rows read at a time: bounds memory whatever the shard size


def _batches(
    root: str | Path, datasets: list[str] | None
) -> Iterator[tuple[pa.ListArray, np.ndarray]]:
    """(units, is_test mask) of a units dataset, batch by batch in shard order: never all at once.

    Rows are filtered by dataset exactly as `units.read_units` does, so the training utterances
    keep the order (and so the indices) they would have in the whole table.
    """
    units_io.load_meta(root)
    wanted = None if datasets is None else pa.array(datasets, pa.string())
    for shard in units_io.shard_paths(root):
        for batch in pq.ParquetFile(shard).iter_batches(
            batch_size=_BATCH_ROWS, columns=["units", "split", "dataset"], use_threads=False
        ):
            if wanted is not None:
                batch = batch.filter(pc.is_in(batch.column("dataset"), wanted))
            if batch.num_rows:
                is_test = pc.equal(batch.column("split"), TEST_SPLIT)
                yield batch.column("units"), is_test.to_numpy(zero_copy_only=False)


def _flat(col: pa.ListArray) -> tuple[np.ndarray, np.ndarray]:
    """(values, offsets) of a list column: row r is values[offsets[r]:offsets[r + 1]]."""
    values = col.values.to_numpy(zero_copy_only=False).astype(TOKEN_DTYPE, copy=False)
    return values, col.offsets.to_numpy().astype(np.int64)


def _pack(utterances: list[np.ndarray], n_units: int) -> np.ndarray:
    """BOS units EOS for every utterance, concatenated."""
    ids = _special_ids(n_units)
    if not utterances:
        return np.zeros(0, dtype=TOKEN_DTYPE)
    bos, eos = np.array([ids["bos"]], TOKEN_DTYPE), np.array([ids["eos"]], TOKEN_DTYPE)
    parts = []
    for u in utterances:
        parts.extend((bos, u, eos))
    return np.concatenate(parts)


def _special_ids(n_units: int) -> dict[str, int]:
    ids = special_token_ids(n_units)
    if ids["eos"] > np.iinfo(TOKEN_DTYPE).max:
        raise ValueError(f"{n_units} units do not fit {np.dtype(TOKEN_DTYPE).name} token ids")
    return ids


def allocate(total: int, weights: list[float], capacity: list[int]) -> list[int]:
    """Split `total` tokens by weight (largest remainder), never more than a source holds.

    Overflow from a source that is too small is redistributed over the others by weight.
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


@dataclass(frozen=True)
class SourceData:
    """One source as read: training utterance *lengths* (units are streamed later) and test."""

    path: str
    weight: float
    in_test: bool
    datasets: list[str] | None
    train_lengths: np.ndarray  # units per training utterance, in shard order
    test: list[np.ndarray]

    @property
    def train_tokens(self) -> int:
        return int(self.train_lengths.sum()) + 2 * len(self.train_lengths)


def _scan(root: str | Path, datasets: list[str] | None, keep_test: bool):
    """Training utterance lengths and (copied) test utterances, one batch in memory at a time."""
    lengths, test = [], []
    for col, is_test in _batches(root, datasets):
        n = pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(np.int64)
        lengths.append(n[~is_test])
        if keep_test and is_test.any():
            values, offsets = _flat(col)
            test.extend(values[offsets[r] : offsets[r + 1]].copy() for r in np.flatnonzero(is_test))
    return (np.concatenate(lengths) if lengths else np.zeros(0, np.int64)), test


def load_sources(data: list[dict]) -> list[SourceData]:
    """Scan every source of a trial config's `data` list (path, weight, in_test, datasets)."""
    out = []
    for src in data:
        path = src["path"]
        if not (Path(path) / units_io.META_FILE).is_file():
            raise UserError(f"{path}: units dataset not found; run `slmscale tokenize` first")
        datasets = src.get("datasets")
        in_test = bool(src.get("in_test", True))
        lengths, test = _scan(path, datasets, in_test)
        out.append(
            SourceData(path, float(src.get("weight", 1.0)), in_test, datasets, lengths, test)
        )
    return out


def _selection(src: SourceData, share: int, index: int, seed: int) -> np.ndarray:
    """Start of each training utterance within the source's share of the pool (-1: not kept).

    The source's utterances in the seed's order, packed and cut after `share` tokens: the
    utterances that start before the cut are kept (the last one possibly truncated).
    """
    order = np.random.default_rng([seed, 1, index]).permutation(len(src.train_lengths))
    ends = np.cumsum(src.train_lengths[order] + 2)
    n_utts = int(np.searchsorted(ends, share, side="left")) + 1
    kept = order[:n_utts]
    starts = np.full(len(src.train_lengths), -1, dtype=np.int64)
    starts[kept] = ends[: len(kept)] - (src.train_lengths[kept] + 2)
    return starts


def _write_source(
    pool: np.ndarray, src: SourceData, starts: np.ndarray, base: int, end: int, ids: dict[str, int]
) -> None:
    """Write a source's kept utterances (BOS units EOS) at pool[base + start], cut at `end`."""
    first = 0  # index of the batch's first training utterance
    for col, is_test in _batches(src.path, src.datasets):
        rows = np.flatnonzero(~is_test)
        at = starts[first : first + len(rows)]
        first += len(rows)
        sel = np.flatnonzero(at >= 0)
        if not len(sel):
            continue
        values, offsets = _flat(col)
        rows, at = rows[sel], at[sel] + base
        lo, n = offsets[rows], offsets[rows + 1] - offsets[rows]
        # every unit of the kept rows: its index in `values` and its position in the pool
        idx = np.arange(int(n.sum()), dtype=np.int64) + np.repeat(lo - (np.cumsum(n) - n), n)
        pos = idx + np.repeat(at + 1 - lo, n)
        keep = pos < end
        pool[pos[keep]] = values[idx[keep]]
        for where, token in ((at, ids["bos"]), (at + 1 + n, ids["eos"])):
            pool[where[where < end]] = token
    if first != len(starts):
        raise UserError(f"{src.path}: units dataset changed while the training pool was built")


def pool_cache_dir() -> Path:
    """Default home of pool files: $SLMSCALE_CACHE/pools, else the system temp directory."""
    root = os.environ.get(ENV_CACHE)
    return Path(root) / "pools" if root else Path(tempfile.gettempdir()) / "slmscale-pools"


def pool_key(sources: list[SourceData], unique_tokens: int, n_units: int, seed: int) -> str:
    """Hash of everything that fixes the pool's bytes: the data (meta.json hashes and paths,
    dataset filters, weights), U_D, the seed and K."""
    blob = {
        "version": POOL_FORMAT,
        "sources": [
            [units_io.meta_hash(s.path), str(Path(s.path).resolve()), s.datasets, s.weight]
            for s in sources
        ],
        "unique_tokens": int(unique_tokens),
        "n_units": int(n_units),
        "seed": int(seed),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:24]


def _open_cached(path: Path, unique_tokens: int) -> np.ndarray | None:
    """The complete pool file at `path`, memory-mapped read-only; None if absent or unusable."""
    if not path.is_file():
        return None
    try:
        pool = np.load(path, mmap_mode="r")
    except (ValueError, OSError):
        return None
    if pool.dtype != TOKEN_DTYPE or pool.shape != (unique_tokens,):
        return None
    return pool


def build_pool(
    sources: list[SourceData],
    unique_tokens: int,
    n_units: int,
    seed: int,
    cache_dir: str | Path | None = None,
) -> np.ndarray:
    """The U_D unique training tokens of a trial, fixed by its seed (see the module docstring).

    A read-only memory map of `<cache_dir>/pool-<key>.npy`, reused when complete.  It is written
    source by source, shard by shard, under a temporary name and renamed when complete, so
    neither the corpus nor the pool is ever held in memory and a killed build is never reused.
    """
    unique_tokens = int(unique_tokens)
    ids = _special_ids(n_units)
    shares = allocate(unique_tokens, [s.weight for s in sources], [s.train_tokens for s in sources])
    if unique_tokens == 0:
        return np.zeros(0, TOKEN_DTYPE)
    cache = Path(cache_dir) if cache_dir is not None else pool_cache_dir()
    path = cache / f"pool-{pool_key(sources, unique_tokens, n_units, seed)}.npy"
    pool = _open_cached(path, unique_tokens)
    if pool is not None:
        return pool
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=TOKEN_DTYPE, shape=(unique_tokens,))
        base = 0
        for i, (src, share) in enumerate(zip(sources, shares, strict=True)):
            if share:
                starts = _selection(src, share, i, seed)
                _write_source(out, src, starts, base, base + share, ids)
            base += share
        assert base == unique_tokens, (base, unique_tokens)
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return np.load(path, mmap_mode="r")


class TokenStream:
    """The training stream: `passes` over the pool's chunks, reshuffled each pass, cut at D."""

    def __init__(self, pool: np.ndarray, tokens: int, context: int, seed: int) -> None:
        self.pool, self.tokens, self.context, self.seed = pool, int(tokens), int(context), seed
        self.unique = len(pool)
        self.n_chunks = math.ceil(self.unique / context)
        self._pass: int | None = None
        self._starts: np.ndarray | None = None  # start offset (within the pass) of each chunk
        self._order: np.ndarray | None = None

    def _load_pass(self, p: int) -> None:
        if self._pass == p:
            return
        order = np.random.default_rng([self.seed, 2, p]).permutation(self.n_chunks)
        lengths = np.minimum(self.context, self.unique - order * self.context)
        self._order = order
        self._starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self._pass = p

    def indices(self, start: int, stop: int) -> np.ndarray:
        """Pool positions of stream tokens [start, stop): what the trainer reads there."""
        stop = min(stop, self.tokens)
        out = []
        pos = start
        while pos < stop:
            p, q = divmod(pos, self.unique)
            self._load_pass(p)
            c = int(np.searchsorted(self._starts, q, side="right")) - 1
            within = q - int(self._starts[c])
            chunk_start = int(self._order[c]) * self.context
            chunk_len = min(self.context, self.unique - chunk_start)
            n = min(chunk_len - within, stop - pos)
            out.append(np.arange(chunk_start + within, chunk_start + within + n))
            pos += n
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def window(self, w: int) -> np.ndarray:
        """Tokens of window `w` (context tokens; the stream's last window may be shorter)."""
        return self.pool[self.indices(w * self.context, (w + 1) * self.context)]

    @property
    def n_windows(self) -> int:
        return math.ceil(self.tokens / self.context)

    def unique_seen(self, tokens_seen: int) -> int:
        """Distinct pool tokens among the first `tokens_seen`: pass 1 visits disjoint chunks."""
        return min(int(tokens_seen), self.unique)


def pad_batch(windows: list[np.ndarray], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, labels) of shape (B, longest); padded positions get IGNORE_INDEX labels."""
    width = max(len(w) for w in windows)
    inputs = np.full((len(windows), width), pad_id, dtype=np.int64)
    labels = np.full((len(windows), width), IGNORE_INDEX, dtype=np.int64)
    for i, w in enumerate(windows):
        inputs[i, : len(w)] = w
        labels[i, : len(w)] = w
    return inputs, labels


def test_windows(
    sources: list[SourceData], n_units: int, context: int, max_tokens: int | None = None
) -> list[np.ndarray]:
    """The held-out test split (sources with in_test) packed into context windows, in order."""
    flat = _pack([u for s in sources if s.in_test for u in s.test], n_units)
    if max_tokens is not None:
        flat = flat[:max_tokens]
    return [flat[i : i + context] for i in range(0, len(flat), context) if len(flat[i:]) > 1]


@dataclass
class TrialData:
    """Everything a trial reads: the training stream and the test windows."""

    stream: TokenStream
    test: list[np.ndarray]
    n_units: int
    tokenizer_fingerprint: str | None


def load_trial_data(config: dict, cache_dir: str | Path | None = None) -> TrialData:
    """The data of a resolved trial config (see slmscale.grid.expand: data, tokens, U_D, seed).

    The pool is a memory-mapped file under `cache_dir` (default: `pool_cache_dir()`).
    """
    sources = load_sources(config["data"])
    metas = {s.path: units_io.load_meta(s.path) for s in sources}
    units_io.check_same_tokenizer(metas)
    n_units = int(config["n_units"])
    pool = build_pool(
        sources, int(config["unique_tokens"]), n_units, int(config["seed"]), cache_dir
    )
    stream = TokenStream(pool, int(config["tokens"]), int(config["context"]), int(config["seed"]))
    test = test_windows(
        sources, n_units, int(config["context"]), config.get("eval", {}).get("max_test_tokens")
    )
    if not test:
        raise UserError(
            "data: no test utterances (split 'test') in the sources with in_test; "
            "the test loss needs a held-out split"
        )
    fingerprint = units_io.tokenizer_fingerprint(next(iter(metas.values()))) if metas else None
    return TrialData(stream, test, n_units, fingerprint)
