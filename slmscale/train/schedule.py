"""Steps and learning rates of a trial: the paper's cosine, or warmup-stable-decay (WSD).

Pure functions of the step (optimizer steps counted from 0), so "the scheduler's state" in a
checkpoint is just the step count, and a WSD branch can start from its trunk's checkpoint.

cosine (the paper, section 3.1): linear warmup reaching `lr_max` at step `warmup - 1`, then
half-cycle cosine from `lr_max` at step `warmup` down to exactly `lr_min` at the last step.
Warmup is max(warmup_min_steps, warmup_fraction x steps).

wsd (Hägele et al. 2024): the same warmup, then `lr_max` held constant (the *trunk*), then a
cooldown over the last `cooldown_fraction` of the run's steps, from the trunk's LR at the branch
step down to exactly `lr_min` at the last step, shaped `1-sqrt` (lr falls as 1 - sqrt(progress),
their best) or `linear`.  Runs of one model size share the trunk up to each one's branch step, so
the warmup must not depend on a run's length: it is `schedule.warmup_steps` (default
`warmup_min_steps`) for every WSD run.

constant: the trunk itself (slmscale.grid.trunks): the WSD warmup, then `lr_max` to the end.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slmscale.trial import Optimizer, Schedule


def steps_for(tokens: int, batch_size: int, context: int) -> int:
    """Optimizer steps that consume exactly `tokens` (the last step may be partial)."""
    return math.ceil(int(tokens) / (int(batch_size) * int(context)))


def warmup_steps(steps: int, optimizer: Optimizer, schedule: Schedule | None = None) -> int:
    """The run's warmup, never more than the run has steps.

    cosine: max(warmup_min_steps, warmup_fraction x steps).  wsd: the schedule's `warmup_steps`
    (default warmup_min_steps), the same for every run of a trunk whatever its length.
    """
    if schedule is not None and schedule.kind in ("wsd", "constant"):
        return min(steps, wsd_warmup(optimizer, schedule))
    return min(steps, max(optimizer.warmup_min_steps, int(optimizer.warmup_fraction * steps)))


def wsd_warmup(optimizer: Optimizer, schedule: Schedule) -> int:
    """The warmup of every WSD run (and trunk) of a spec: it cannot scale with a run's length,
    so it is set once (`schedule.warmup_steps`, as for a typical run), else warmup_min_steps."""
    return (
        schedule.warmup_steps if schedule.warmup_steps is not None else optimizer.warmup_min_steps
    )


def branch_step(steps: int, schedule: Schedule) -> int:
    """The first step of a WSD run's cooldown, round((1 - f) x steps), leaving at least one:
    the run leaves its trunk with the trunk's state after `branch_step` steps."""
    return min(steps - 1, max(0, round((1.0 - schedule.cooldown_fraction) * steps)))


def lr_at(
    step: int,
    *,
    steps: int,
    warmup_steps: int,
    lr_max: float,
    lr_min: float,
    schedule: Schedule | None = None,
) -> float:
    """Learning rate of optimizer step `step` (0-based) of a run of `steps` steps."""
    warm = lr_max * (step + 1) / warmup_steps if step < warmup_steps else lr_max
    if schedule is not None and schedule.kind == "constant":  # a WSD trunk
        return warm
    if schedule is not None and schedule.kind == "wsd":
        return _wsd(step, warm, steps, lr_min, schedule)
    if step < warmup_steps:
        return warm
    decay_steps = steps - 1 - warmup_steps
    if decay_steps <= 0:  # warmup ends one step before the last: the last step is the end
        return lr_min
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    c = 0.5 * (1.0 + math.cos(math.pi * progress))
    # Written as a blend so both endpoints are exact: c = 1 -> lr_max, c = 0 -> lr_min.
    return lr_min * (1.0 - c) + lr_max * c


def _wsd(step: int, trunk_lr: float, steps: int, lr_min: float, schedule: Schedule) -> float:
    """The trunk's LR before the branch step; from it on, a blend that reaches lr_min exactly
    at the last step (progress 1/n .. 1 over the n = steps - start cooldown steps)."""
    start = branch_step(steps, schedule)
    if step < start:
        return trunk_lr
    progress = min(1.0, (step - start + 1) / (steps - start))
    c = 1.0 - math.sqrt(progress) if schedule.cooldown_shape == "1-sqrt" else 1.0 - progress
    return lr_min * (1.0 - c) + trunk_lr * c
