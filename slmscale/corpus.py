"""Training and test token streams from units datasets (pure core: numpy and pyarrow only).

How a trial's data is made (DESIGN.md "Token store", the paper's section 3):

1. The token store (slmscale/tokenstore.py) holds every training utterance (every split but
   held-out ones: `units.is_training_split`) of the trial's units datasets once, as `BOS units EOS`, in a fixed order: each source
   shuffled by the seed, the sources merged so that every prefix holds the declared mixture.
   It is built once per (data, K, seed), by `slmscale tokenize` or the first trial that needs
   it, and shared by every trial and rank.
2. Unique tokens: the trial's *pool* is the first U_D tokens of the store, a view of its memory
   map: nothing is copied or rescanned, and smaller budgets are prefixes of larger ones.
3. Passes: the pool is cut into `context`-token chunks; each pass visits every chunk once, in an
   order freshly shuffled for that pass.  The passes, concatenated and cut after exactly D tokens,
   are the training *stream*; it is cut into `context`-token windows (the last may be shorter).

The stream is addressed by token offset, so the position in the data is one integer
(tokens consumed): checkpoints store it and a resumed trial reads the very same windows.
The test set is the `test` split of the sources with `in_test`, packed the same way, unshuffled
(kept in the store too, so a trial start reads no Parquet shard).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from slmscale import tokenstore
from slmscale import units as units_io
from slmscale.errors import UserError
from slmscale.tokenstore import ENV_CACHE, TokenStore, allocate, ensure_store  # noqa: F401
from slmscale.trial import DataSource

if TYPE_CHECKING:
    from slmscale.trial import Trial

TEST_SPLIT = tokenstore.TEST_SPLIT
IGNORE_INDEX = -100  # label of padding positions (torch cross-entropy's default ignore index)


class TokenStream:
    """The training stream: `passes` over the pool's chunks, reshuffled each pass, cut at D.

    With `first_pass_in_order` the first pass reads the pool in store order (later passes are
    shuffled as usual), so the stream's first D tokens are the store's first D whatever U_D is:
    what lets WSD runs of different budgets share one trunk (slmscale.train.schedule).
    """

    def __init__(
        self,
        pool: np.ndarray,
        tokens: int,
        context: int,
        seed: int,
        first_pass_in_order: bool = False,
    ) -> None:
        self.pool, self.tokens, self.context, self.seed = pool, int(tokens), int(context), seed
        self.first_pass_in_order = first_pass_in_order
        self.unique = len(pool)
        self.n_chunks = math.ceil(self.unique / context)
        self._pass: int | None = None
        self._starts: np.ndarray | None = None  # start offset (within the pass) of each chunk
        self._order: np.ndarray | None = None

    def _load_pass(self, p: int) -> None:
        if self._pass == p:
            return
        if p == 0 and self.first_pass_in_order:
            order = np.arange(self.n_chunks)
        else:
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
    test_tokens: np.ndarray, context: int, max_tokens: int | None = None
) -> list[np.ndarray]:
    """Packed test tokens cut into context windows, in order (a last 1-token window is dropped:
    it has no target)."""
    flat = test_tokens if max_tokens is None else test_tokens[:max_tokens]
    return [flat[i : i + context] for i in range(0, len(flat), context) if len(flat[i:]) > 1]


@dataclass
class TrialData:
    """Everything a trial reads: the training stream and the test windows."""

    stream: TokenStream
    test: list[np.ndarray]
    n_units: int
    tokenizer_fingerprint: str | None


def load_trial_data(trial: Trial, cache_dir: str | Path | None = None) -> TrialData:
    """The data of a trial (slmscale.trial.Trial): its stream of D tokens over U_D, its test set."""
    return open_data(
        trial.data,
        n_units=trial.n_units,
        seed=trial.seed,
        unique_tokens=trial.unique_tokens,
        tokens=trial.tokens,
        context=trial.context,
        max_test_tokens=trial.eval.max_test_tokens,
        first_pass_in_order=trial.schedule.kind != "cosine",  # WSD branches and their trunks
        cache_dir=cache_dir,
    )


def open_data(
    sources: Sequence[DataSource],
    *,
    n_units: int,
    seed: int,
    unique_tokens: int,
    tokens: int,
    context: int,
    max_test_tokens: int | None = None,
    first_pass_in_order: bool = False,
    cache_dir: str | Path | None = None,
) -> TrialData:
    """A stream of `tokens` over the first `unique_tokens` of the sources' token store.

    The pool is a prefix of the token store under `cache_dir` (default:
    `tokenstore.default_store_dir`), which is built first if it is not ready: safe to call from
    every rank at once (one builds, the others wait).  With a ready store no shard is read.
    """
    for src in sources:
        if not units_io.is_units_dataset(src.path):
            raise UserError(f"{src.path}: units dataset not found; run `slmscale tokenize` first")
    metas = {s.path: units_io.load_meta(s.path) for s in sources}
    units_io.check_same_tokenizer(metas)
    store_sources = [
        {"path": s.path, "weight": s.weight, "datasets": _list(s.datasets)} for s in sources
    ]
    store = ensure_store(store_sources, int(n_units), int(seed), cache_dir)
    pool = store.prefix(int(unique_tokens))
    stream = TokenStream(pool, tokens, context, seed, first_pass_in_order)
    test = test_windows(store.test([s.in_test for s in sources]), int(context), max_test_tokens)
    if not test:
        raise UserError(
            "data: no test utterances (split 'test') in the sources with in_test; "
            "the test loss needs a held-out split"
        )
    fingerprint = units_io.tokenizer_fingerprint(next(iter(metas.values()))) if metas else None
    return TrialData(stream, test, int(n_units), fingerprint)


def _list(values) -> list | None:
    return list(values) if values is not None else None
