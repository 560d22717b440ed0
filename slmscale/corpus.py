"""Training and test token streams from units datasets (pure core: numpy and pyarrow only).

How a trial's data is made (DESIGN.md "Grid spec", the paper's section 3):

1. Every training utterance (any split but `test`) becomes `BOS units EOS`.
2. Unique tokens: each source gets a share of U_D by its mixture weight (a source too small for
   its share gives the rest to the others).  Its utterances are shuffled with the trial's seed and
   concatenated; the first `share` tokens are kept.  The kept tokens of all sources, concatenated,
   are the *pool*: exactly U_D tokens, fixed by the seed.
3. Passes: the pool is cut into `context`-token chunks; each pass visits every chunk once, in an
   order freshly shuffled for that pass.  The passes, concatenated and cut after exactly D tokens,
   are the training *stream*; it is cut into `context`-token windows (the last may be shorter).

The stream is addressed by token offset, so the position in the data is one integer
(tokens consumed): checkpoints store it and a resumed trial reads the very same windows.
The test set is the `test` split of the sources with `in_test`, packed the same way, unshuffled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from slmscale import units as units_io
from slmscale.errors import UserError
from slmscale.model import special_token_ids

TEST_SPLIT = "test"
IGNORE_INDEX = -100  # label of padding positions (torch cross-entropy's default ignore index)
# Token ids in memory: units (K <= 65,532) plus PAD/BOS/EOS fit in 16 bits, half of int32's
# footprint; batches are widened to int64 only when padded (pad_batch).
TOKEN_DTYPE = np.uint16


def _utterances(root: str | Path, datasets: list[str] | None, test: bool) -> list[np.ndarray]:
    """Units arrays of the training (or test) utterances of one units dataset, in shard order."""
    table = units_io.read_units(root, datasets=datasets, columns=["units", "split", "dataset"])
    is_test = pc.equal(table["split"], TEST_SPLIT)
    table = table.filter(is_test if test else pc.invert(is_test))
    col = table["units"].combine_chunks()
    values = col.values.to_numpy(zero_copy_only=False).astype(TOKEN_DTYPE, copy=False)
    offsets = col.offsets.to_numpy()
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(col))]


def _pack(utterances: list[np.ndarray], n_units: int) -> np.ndarray:
    """BOS units EOS for every utterance, concatenated."""
    ids = special_token_ids(n_units)
    if ids["eos"] > np.iinfo(TOKEN_DTYPE).max:
        raise ValueError(f"{n_units} units do not fit {np.dtype(TOKEN_DTYPE).name} token ids")
    if not utterances:
        return np.zeros(0, dtype=TOKEN_DTYPE)
    bos, eos = np.array([ids["bos"]], TOKEN_DTYPE), np.array([ids["eos"]], TOKEN_DTYPE)
    parts = []
    for u in utterances:
        parts.extend((bos, u, eos))
    return np.concatenate(parts)


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
    """One source's utterances, as read: training (packed later) and test."""

    path: str
    weight: float
    in_test: bool
    train: list[np.ndarray]
    test: list[np.ndarray]

    @property
    def train_tokens(self) -> int:
        return sum(len(u) + 2 for u in self.train)


def load_sources(data: list[dict]) -> list[SourceData]:
    """Read every source of a trial config's `data` list (path, weight, in_test, datasets)."""
    out = []
    for src in data:
        path = src["path"]
        if not (Path(path) / units_io.META_FILE).is_file():
            raise UserError(f"{path}: units dataset not found; run `slmscale tokenize` first")
        datasets = src.get("datasets")
        out.append(
            SourceData(
                path,
                float(src.get("weight", 1.0)),
                bool(src.get("in_test", True)),
                _utterances(path, datasets, test=False),
                _utterances(path, datasets, test=True) if src.get("in_test", True) else [],
            )
        )
    return out


def build_pool(
    sources: list[SourceData], unique_tokens: int, n_units: int, seed: int
) -> np.ndarray:
    """The U_D unique training tokens of a trial, fixed by its seed (see the module docstring)."""
    shares = allocate(unique_tokens, [s.weight for s in sources], [s.train_tokens for s in sources])
    parts = []
    for i, (src, share) in enumerate(zip(sources, shares, strict=True)):
        rng = np.random.default_rng([seed, 1, i])
        order = rng.permutation(len(src.train))
        lengths = np.array([len(src.train[j]) + 2 for j in order], dtype=np.int64)
        n_utts = int(np.searchsorted(np.cumsum(lengths), share, side="left")) + 1
        packed = _pack([src.train[j] for j in order[:n_utts]], n_units)
        parts.append(packed[:share])
    pool = np.concatenate(parts) if parts else np.zeros(0, TOKEN_DTYPE)
    assert len(pool) == unique_tokens, (len(pool), unique_tokens)
    return pool


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


def load_trial_data(config: dict) -> TrialData:
    """The data of a resolved trial config (see slmscale.grid.expand: data, tokens, U_D, seed)."""
    sources = load_sources(config["data"])
    metas = {s.path: units_io.load_meta(s.path) for s in sources}
    units_io.check_same_tokenizer(metas)
    n_units = int(config["n_units"])
    pool = build_pool(sources, int(config["unique_tokens"]), n_units, int(config["seed"]))
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
