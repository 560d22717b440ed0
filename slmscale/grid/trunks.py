"""Which WSD trials share a constant-LR trunk, where each branches off, and what it all costs.

Pure core (no Ray, no MLflow).  With `schedule: {kind: wsd}` every grid point is still its own
trial (one run, one key), but the points that differ only in their budget train one *trunk*
(warmup, then constant LR) and each *branches* off it at its own branch step
(slmscale.train.schedule.branch_step) to cool down over its last steps.  A branch started from
the trunk's state at its branch step computes exactly what a from-scratch WSD run of its budget
would: the same initial weights (seed), learning rates (the trunk's before the branch step) and
tokens (a WSD run reads its first pass in store order, so every budget's stream is a prefix of
the trunk's; slmscale.corpus.TokenStream).

Which points share a trunk: equal in everything but the budget, and
- single-pass points (U_D = D) share one trunk whose first pass runs through the store in order
  (a larger budget later only extends it), together with the points that repeat all the data
  (`epochs: auto` past the data: U_D = all of it), whose first pass is the same;
- other repeated-data points share a trunk only with points that repeat the same U_D tokens.
A point whose run is shorter than the warmup, or that no other point shares a trunk with,
trains alone (a plain WSD run from scratch).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace

from slmscale.model import training_flops
from slmscale.train import schedule as lr_schedule
from slmscale.trial import Schedule, Trial


@dataclass(frozen=True)
class Trunk:
    """One constant-LR trunk and the WSD trials that branch off it."""

    key: str  # what the trunk is: its branches' identity without budget or cooldown
    trial: Trial  # the trunk as a trial: constant LR, `steps` = the last branch step
    branches: tuple[Trial, ...]  # shortest branch step first

    @property
    def steps(self) -> int:
        return self.trial.steps

    def branch_steps(self) -> list[int]:
        return sorted({branch_step(t) for t in self.branches})

    @property
    def name(self) -> str:
        return f"trunk-{self.key}"


def branch_step(trial: Trial) -> int:
    """The step at which a WSD trial leaves its trunk (its first cooldown step)."""
    return lr_schedule.branch_step(trial.steps, trial.schedule)


def shares_a_trunk(trial: Trial) -> bool:
    """WSD trials branch off a trunk unless they leave it before its warmup ends."""
    warmup = lr_schedule.wsd_warmup(trial.optimizer, trial.schedule)
    return trial.schedule.kind == "wsd" and branch_step(trial) > warmup


def trunk_key(trial: Trial, available: float | None = None) -> str:
    """The key of the trunk a WSD trial branches off: its identity without the budget and the
    cooldown, with the unique tokens only when a part of the data repeats (a single pass reads
    the store in order whatever its length, as does the first pass over all of it:
    `available`, the training tokens of the data)."""
    identity = trial.identity()
    identity.pop("tokens")
    whole = available is not None and trial.unique_tokens == int(available)
    single = trial.unique_tokens == trial.tokens
    identity["unique_tokens"] = None if (single or whole) else trial.unique_tokens
    identity["schedule"] = {"kind": "trunk", "warmup_steps": trial.schedule.warmup_steps}
    identity["benchmarks"] = []  # scored by the branches, not the trunk
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def plan_trunks(
    trials: list[Trial], available: float | None = None, min_branches: int = 2
) -> list[Trunk]:
    """The trunks of the WSD trials that share one (at least `min_branches` of them), in the
    order of their first trial; each trunk runs to its last branch's branch step."""
    groups: dict[str, list[Trial]] = {}
    for t in trials:
        if shares_a_trunk(t):
            groups.setdefault(trunk_key(t, available), []).append(t)
    return [
        make_trunk(key, members) for key, members in groups.items() if len(members) >= min_branches
    ]


def make_trunk(key: str, branches: list[Trial]) -> Trunk:
    """The trunk `key` of `branches` as a trial: constant LR to their last branch step, over
    the largest pool any of them reads (a single-pass pool is a prefix of it)."""
    branches = sorted(branches, key=lambda t: (branch_step(t), t.key))
    first, last = branches[0], branch_step(branches[-1])
    trunk = replace(
        first,
        tokens=last * first.batch_size * first.context,
        unique_tokens=max(t.unique_tokens for t in branches),
        schedule=Schedule(kind="constant", warmup_steps=first.schedule.warmup_steps),
        benchmarks=(),
    )
    return Trunk(key, trunk, tuple(branches))


@dataclass(frozen=True)
class ScheduleCost:
    """What a grid trains under each schedule: 6 N D FLOPs (what the laws count) and the FLOPs
    GPU-hours are estimated from (6N plus attention, slmscale.model.flops_per_token)."""

    cosine: float  # every point its own run from scratch
    wsd: float  # trunks to their last branch step, plus every cooldown
    cosine_mfu: float
    wsd_mfu: float
    trunks: int  # trunks shared by two or more points

    @property
    def saved(self) -> float:
        return 1.0 - self.wsd / self.cosine if self.cosine else 0.0

    def gpu_hours(self, mfu: float, peak_flops: float) -> tuple[float, float]:
        """(cosine, wsd) GPU-hours at `mfu` of `peak_flops` FLOP/s per GPU."""
        per_hour = mfu * peak_flops * 3600
        return self.cosine_mfu / per_hour, self.wsd_mfu / per_hour


def schedule_cost(
    trials: list[Trial], available: float | None = None, cooldown: Schedule | None = None
) -> ScheduleCost:
    """What `trials` cost as cosine runs and as WSD trunks + cooldowns.

    The trials' own schedule does not matter: each is costed both ways (WSD with `cooldown`, or
    the trials' own WSD settings, or the default 20% 1-sqrt cooldown), as the dry run and the
    design advisor compare them.
    """
    wsd = cooldown or next((t.schedule for t in trials if t.schedule.kind == "wsd"), None)
    wsd = wsd or Schedule(kind="wsd")
    as_wsd = [replace(t, schedule=wsd) for t in trials]
    shared = plan_trunks(as_wsd, available)
    in_trunks = {b.key for tr in shared for b in tr.branches}
    # (trial, tokens it trains): each trunk to its last branch step, each branch its cooldown
    parts = [(t, t.tokens) for t in as_wsd if t.key not in in_trunks]
    for trunk in shared:
        per_step = trunk.trial.batch_size * trunk.trial.context
        parts.append((trunk.trial, trunk.trial.tokens))
        parts += [(b, b.tokens - branch_step(b) * per_step) for b in trunk.branches]
    return ScheduleCost(
        cosine=sum(t.flops for t in trials),
        wsd=sum(training_flops(t.n_params, n) for t, n in parts),
        cosine_mfu=sum(t.flops_with_attention for t in trials),
        wsd_mfu=sum(t.flops_with_attention / t.tokens * n for t, n in parts),
        trunks=len(shared),
    )
