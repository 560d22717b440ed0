"""The paper's learning-rate schedule (section 3.1): linear warmup, then half-cycle cosine.

Steps are optimizer steps counted from 0.  Warmup: lr rises linearly and reaches `lr_max` at step
`warmup_steps - 1`.  Cosine: from `lr_max` at step `warmup_steps` down to exactly `lr_min` at the
last step (`steps - 1`).  The schedule is a pure function of the step, so "the scheduler's state"
in a checkpoint is just the step count.
"""

from __future__ import annotations

import math


def lr_at(step: int, *, steps: int, warmup_steps: int, lr_max: float, lr_min: float) -> float:
    """Learning rate of optimizer step `step` (0-based) of a run of `steps` steps."""
    if step < warmup_steps:
        return lr_max * (step + 1) / warmup_steps
    decay_steps = steps - 1 - warmup_steps
    if decay_steps <= 0:  # warmup ends one step before the last: the last step is the end
        return lr_min
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    c = 0.5 * (1.0 + math.cos(math.pi * progress))
    # Written as a blend so both endpoints are exact: c = 1 -> lr_max, c = 0 -> lr_min.
    return lr_min * (1.0 - c) + lr_max * c
