"""The store as trials read it: its layout on disk, the index, and the verified memory maps.

Layout of `<dir>/store-<key>/`: `tokens.bin` (the training tokens, raw uint16 when K + 3 specials
fit, else uint32), `test.bin` (each source's `test` split, packed the same way, shard order),
`utterances.npy` (store offset of every utterance, plus the end), `utt_source.npy` (its source),
and `index.json` (format, dtype, counts, per-source ranges and weights, each shard's name, size,
mtime and content digest).  A store is opened only if its index is complete, of this format and
key, its token files have the recorded sizes, and its shards match the sources
(`identity.stale_reason`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slmscale.errors import UserError
from slmscale.tokenstore.identity import FORMAT, stale_reason

INDEX_FILE = "index.json"
TOKENS_FILE = "tokens.bin"
TEST_FILE = "test.bin"
UTTS_FILE = "utterances.npy"
UTT_SOURCE_FILE = "utt_source.npy"


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


def read_index(path: Path) -> dict | None:
    try:
        index = json.loads((path / INDEX_FILE).read_text())
    except (OSError, ValueError):
        return None
    return index if isinstance(index, dict) else None


def open_verified(path: Path, key: str, data: list[dict]) -> tuple[TokenStore | None, str | None]:
    """(store, None) if `path` holds a complete store for these sources; else (None, why)."""
    try:
        return _open_checked(path, key, data)
    except (KeyError, TypeError, ValueError, OSError) as exc:  # a damaged index: not trusted
        return None, f"{path}: unreadable index ({type(exc).__name__})"


def _open_checked(path: Path, key: str, data: list[dict]) -> tuple[TokenStore | None, str | None]:
    index = read_index(path)
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
    why = stale_reason(index, data)
    if why is not None:
        return None, why
    tokens = _map(path / TOKENS_FILE, dtype, n)
    test = _map(path / TEST_FILE, dtype, n_test)
    return TokenStore(path, index, tokens, test), None
