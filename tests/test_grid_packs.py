"""Packs of grid points per Ray Train job (slmscale.grid.packs): pure, no Ray."""

from __future__ import annotations

import math
import os
import random

import pytest

from slmscale.config.grid import ResourcesSpec
from slmscale.grid.packs import make_packs, pack_name


def _items(works, resources=None):
    return [
        {"key": f"k{i:03d}", "work": w, "res": (resources or {}).get(i, {"workers": 1})}
        for i, w in enumerate(works)
    ]


def _pack(items, per):
    return make_packs(
        items, per, key=lambda i: i["key"], work=lambda i: i["work"], resources=lambda i: i["res"]
    )


def test_every_trial_in_exactly_one_pack_of_at_most_the_size():
    items = _items([random.Random(0).uniform(1, 100) for _ in range(23)])
    packs = _pack(items, 5)
    keys = [i["key"] for p in packs for i in p]
    assert sorted(keys) == sorted(i["key"] for i in items)
    assert len(packs) == math.ceil(23 / 5) and max(len(p) for p in packs) <= 5


def test_one_per_pack_is_one_job_per_trial():
    items = _items([3.0, 1.0, 2.0])
    assert sorted(len(p) for p in _pack(items, 1)) == [1, 1, 1]


def test_packs_do_not_depend_on_the_order_trials_come_in():
    items = _items([random.Random(1).uniform(1, 50) for _ in range(17)])
    shuffled = items[:]
    random.Random(2).shuffle(shuffled)
    as_keys = lambda packs: [[i["key"] for i in p] for p in packs]  # noqa: E731
    assert as_keys(_pack(items, 4)) == as_keys(_pack(shuffled, 4))
    names = [pack_name([i["key"] for i in p]) for p in _pack(items, 4)]
    assert names == [pack_name([i["key"] for i in reversed(p)]) for p in _pack(shuffled, 4)]
    assert len(set(names)) == len(names)


def test_packs_are_balanced_where_chunks_in_grid_order_are_not():
    # The demo's shape: budgets doubling, each size's trials next to each other in grid order.
    works = [n * d for n in (1, 2, 4, 8) for d in (1, 2, 4, 8, 16)]
    loads = [sum(i["work"] for i in p) for p in _pack(_items(works), 10)]
    chunks = [sum(works[:10]), sum(works[10:])]
    assert max(loads) / min(loads) < 1.1
    assert max(chunks) / min(chunks) > 3  # what a naive split would have done


def test_trials_with_different_resources_never_share_a_job():
    items = _items([1.0] * 6, resources={0: {"workers": 2}, 3: {"workers": 2}})
    packs = _pack(items, 4)
    for p in packs:
        assert len({str(i["res"]) for i in p}) == 1
    two = [p for p in packs if p[0]["res"] == {"workers": 2}]
    assert [sorted(i["key"] for i in p) for p in two] == [["k000", "k003"]]


def test_inside_a_pack_the_small_trials_run_first():
    for p in _pack(_items([5.0, 1.0, 3.0, 2.0, 4.0]), 5):
        assert [i["work"] for i in p] == sorted(i["work"] for i in p)


def test_trials_per_job_is_validated_by_the_spec():
    assert ResourcesSpec().trials_per_job == 1
    with pytest.raises(ValueError, match="trials_per_job"):
        ResourcesSpec(trials_per_job=0)
    with pytest.raises(ValueError):
        _pack(_items([1.0]), 0)


def _job(key: str, **res):
    from _trials import tiny_job

    from slmscale.config.grid import TrialResources

    return tiny_job(resources=TrialResources(**res))


def test_a_local_ray_starts_only_the_trials_its_resources_can_train():
    from slmscale.grid.units import trials_that_fit

    # 1 CPU per worker + Tune's 0.01: one at a time on 2 cores; 0.9 CPU: two.
    assert trials_that_fit([_job("a"), _job("b"), _job("c")], {"CPU": 2.0}) == 1
    assert trials_that_fit([_job("a", cpus_per_worker=0.9)] * 5, {"CPU": 2.0}) == 2
    # GPUs and custom resources bound it too; 2 workers need twice the resources.
    gpu = _job("g", cpus_per_worker=1.0, gpus_per_worker=0.5)
    assert trials_that_fit([gpu] * 9, {"CPU": 16.0, "GPU": 2.0}) == 4
    two = _job("w", workers=2, cpus_per_worker=2.0, custom={"node": 1})
    assert trials_that_fit([two] * 9, {"CPU": 64.0, "node": 4.0}) == 2
    assert trials_that_fit([two], {"CPU": 1.0}) == 1  # never 0: Ray says what is missing


def test_the_train_job_bounds_placement_retries_and_retries_preemptions_without_limit(tmp_path):
    """A worker group that cannot be placed is a controller failure in Ray Train 2.60; without
    `controller_failure_limit` Train retries it forever (docs/cluster.md)."""
    from slmscale.grid.trainable import CONTROLLER_RETRIES, _trainer
    from slmscale.grid.trainworker import TrainUnit

    job = _job("a", max_failures=3)
    trainer = _trainer(
        TrainUnit("trial-a", (job,), packed=False), job.resources, str(tmp_path), None
    )
    failure = trainer.run_config.failure_config
    assert (failure.max_failures, failure.max_preemption_failures) == (3, -1)
    assert failure.controller_failure_limit == CONTROLLER_RETRIES > 0


def test_a_local_ray_starts_without_trains_preemption_watcher_a_cluster_keeps_it(monkeypatch):
    """No node of a local Ray can be preempted: its processes start with the watcher off (one
    actor less per Train job); joining a cluster changes nothing; the driver's own setting wins
    and is left as it was."""
    from slmscale.grid.tune import PREEMPTION_WATCHER_ENV, _local_ray_settings

    monkeypatch.delenv(PREEMPTION_WATCHER_ENV, raising=False)
    with _local_ray_settings(local=True):
        assert os.environ[PREEMPTION_WATCHER_ENV] == "0"
    assert PREEMPTION_WATCHER_ENV not in os.environ
    with _local_ray_settings(local=False):
        assert PREEMPTION_WATCHER_ENV not in os.environ
    monkeypatch.setenv(PREEMPTION_WATCHER_ENV, "1")
    with _local_ray_settings(local=True):
        assert os.environ[PREEMPTION_WATCHER_ENV] == "1"
    assert os.environ[PREEMPTION_WATCHER_ENV] == "1"
