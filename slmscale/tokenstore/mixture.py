"""The store's arithmetic: token width, disk size, mixture weights and shares of a prefix.

Pure functions (numpy only), shared by the builder, the dry run and the planner: what the dry run
prints about a mixture is what the store will hold.
"""

from __future__ import annotations

import math

import numpy as np

from slmscale.errors import UserError
from slmscale.model import special_token_ids


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
