"""What Tune schedules: the grid's jobs as units of work, one Ray Train job each (pure).

One unit per trial by default; with `resources.trials_per_job` > 1, packs of about that many
trials (slmscale.grid.packs).  WSD trials that share a trunk (slmscale.grid.trunks) come as a
group: the trunk job first, then its branches, shortest first, and a pack never splits a group.
On a local Ray, `trials_that_fit` says how many units its resources train at once.
"""

from __future__ import annotations

from dataclasses import replace

from slmscale.config.grid import ResourcesSpec
from slmscale.grid.packs import make_packs, pack_name
from slmscale.grid.runner import TrialJob
from slmscale.grid.trainworker import TrainUnit
from slmscale.grid.trunks import branch_step, make_trunk


def units_of_work(todo: list[TrialJob], resources: ResourcesSpec) -> list[TrainUnit]:
    """What Tune schedules: one unit per trial (a WSD trunk before its branches), or packs of
    about `resources.trials_per_job` trials, a trunk and its branches always in one pack."""
    groups = work_groups(todo)
    if resources.trials_per_job <= 1:
        return [TrainUnit(f"trial-{j.key}", (j,), packed=False) for g in groups for j in g]
    packs = make_packs(
        groups,
        resources.trials_per_job,
        key=lambda g: g[0].key,
        work=lambda g: sum(_steps_to_train(j) for j in g),  # a small trial's time (grid.packs)
        resources=lambda g: g[0].resources.group(),
        size=len,
    )
    units = []
    for pack in packs:
        jobs = tuple(j for g in pack for j in g)
        units.append(TrainUnit(pack_name([j.key for j in jobs]), jobs, packed=True))
    return units


def work_groups(todo: list[TrialJob]) -> list[list[TrialJob]]:
    """The jobs to run, grouped: [trunk job, its branches (shortest first)] for WSD trials that
    share a trunk (the trunk to the last branch step still needed), [job] for the others."""
    by_trunk: dict[str, list[TrialJob]] = {}
    for j in todo:
        if j.trunk:
            by_trunk.setdefault(j.trunk, []).append(j)
    groups: list[list[TrialJob]] = []
    for key, members in by_trunk.items():
        trunk = make_trunk(key, [j.trial for j in members])
        by_key = {j.key: j for j in members}
        head = replace(
            members[0], trial=trunk.trial, branch_steps=tuple(trunk.branch_steps()),
            run_name=f"{trunk.trial.model_size}-trunk-{key[:6]}",
        )  # fmt: skip
        groups.append([head, *(by_key[t.key] for t in trunk.branches)])
    return groups + [[j] for j in todo if not j.trunk]


def _steps_to_train(job: TrialJob) -> int:
    """Optimizer steps a job trains: a branch only its cooldown."""
    return job.trial.steps - (branch_step(job.trial) if job.trunk and not job.is_trunk else 0)


def trials_that_fit(jobs: list[TrialJob], total: dict) -> int:
    """How many of `jobs` a fixed set of resources (`total`, a local Ray) trains at once.

    Without a limit Tune starts every trial at once (each holds only 0.01 CPU), and the Train
    controllers of those that cannot get their workers wait, each a process importing Ray
    Train on the same cores as the trials that train (the smoke grid's 5 trials on 2 cores).
    Not used on a cluster that may scale: there the waiting trials are its demand signal.
    """
    fits = []
    for job in jobs:
        res = job.resources
        need = {k: res.workers * float(v) for k, v in res.per_worker().items()}
        need["CPU"] += 0.01  # the Tune trial's own share
        fits.append(min(int(total.get(k, 0.0) // v) for k, v in need.items() if v > 0))
    return max(1, max(fits, default=1))


def _tune_config(unit: TrainUnit) -> dict:
    """A unit as a Tune trial's config: plain values the driver reads (name, keys, packed; Tune
    swaps other objects for object-store references on the driver) and the unit itself."""
    return {"name": unit.name, "keys": unit.keys, "packed": unit.packed, "work": unit}
