"""Which grid points share a Ray Train job (`resources.trials_per_job`); pure.

A Train job costs the same fixed start-up whatever it trains: a controller and worker
processes, torch, transformers and MLflow imported, a process group.  For the demo's trials
(seconds of training each) that start-up was most of the grid's time, so several trials can be
trained one after another by one job.  Packing is deterministic (the same trials give the same
packs and the same job names) and balanced: the longest-processing-time-first rule on each
trial's expected time, so the packs that run side by side end at about the same time.  Trials
that small take time by their optimizer steps, not their FLOPs (the demo's models, 3.4k to 27k
parameters: 8x the FLOPs per token, 1.6x the time per token), so the grid weighs them by steps.
Trials with different resources (workers, CPUs, GPUs) never share a job.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def pack_name(keys: Sequence[str]) -> str:
    """The Train job's name for trials `keys`: `pack-<hash of the sorted keys>`."""
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()
    return f"pack-{digest[:16]}"


def make_packs(
    items: Sequence[T],
    per_pack: int,
    *,
    key: Callable[[T], str],
    work: Callable[[T], float],
    resources: Callable[[T], object],
    size: Callable[[T], int] = lambda _item: 1,
) -> list[list[T]]:
    """Split `items` into packs of at most `per_pack` (counted by `size`: an item may be a group
    of trials, e.g. a WSD trunk and its branches, that must stay together), balanced by `work`,
    one resource set each.

    Within a resource group there are ceil(total size / per_pack) packs; items are placed
    largest work first, each into the pack with the least work so far that still has room, or
    the least filled one when none has (ties: the earlier pack).  Inside a pack, items run
    smallest work first, so the pack's first results come early.  Packs are returned in order
    of their first item's key (deterministic).
    """
    if per_pack < 1:
        raise ValueError(f"per_pack must be >= 1, got {per_pack}")
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(json.dumps(resources(item), sort_keys=True), []).append(item)
    packs: list[list[T]] = []
    for members in groups.values():
        n_packs = max(1, math.ceil(sum(size(i) for i in members) / per_pack))
        bins: list[list[T]] = [[] for _ in range(n_packs)]
        loads, filled = [0.0] * n_packs, [0] * n_packs
        for item in sorted(members, key=lambda i: (-work(i), key(i))):
            fits = [b for b in range(n_packs) if filled[b] + size(item) <= per_pack]
            b = min(fits, key=lambda b: (loads[b], b)) if fits else filled.index(min(filled))
            bins[b].append(item)
            loads[b] += work(item)
            filled[b] += size(item)
        packs += [sorted(b, key=lambda i: (work(i), key(i))) for b in bins if b]
    return sorted(packs, key=lambda p: key(p[0]))
