"""slmscale.grid.cluster_limits: trials in flight a cluster holds, and trials it can never place."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml

from slmscale.config.grid import ResourcesSpec
from slmscale.errors import UserError
from slmscale.grid.cluster_limits import (
    HEAD_BASE_BYTES,
    HEAD_BYTES_PER_TRIAL,
    HEAD_USABLE_FRACTION,
    ClusterShape,
    NodeType,
    check_placeable,
    default_concurrency,
    head_trial_bound,
    node_types_from_config,
    node_types_from_nodes,
    trials_at_once,
    unplaceable,
    worker_bundle,
)

ROOT = Path(__file__).resolve().parents[1]
GIB = 1024**3

# The fake cluster of tests/test_cluster_autoscaling.py, as Ray's cluster launcher writes it.
FAKE = {
    "max_workers": 2,
    "head_node_type": "ray.head.default",
    "available_node_types": {
        "ray.head.default": {"resources": {"CPU": 2, "GPU": 0}, "max_workers": 0},
        "gpu.a10g": {
            "resources": {"CPU": 1, "GPU": 1, "a10g": 1},
            "min_workers": 0,
            "max_workers": 2,
        },
    },
}


def _res(workers=1, cpus=1.0, gpus=0.0, **custom) -> dict:
    return {"workers": workers, "cpus_per_worker": cpus, "gpus_per_worker": gpus, "custom": custom}


def test_a_worker_asks_for_its_cpus_gpus_and_custom_resources():
    assert worker_bundle(_res(cpus=2, gpus=0.25)) == {"CPU": 2.0, "GPU": 0.25}
    assert worker_bundle(_res(a10g=1)) == {"CPU": 1.0, "a10g": 1.0}  # no GPU key when 0


def test_node_types_of_the_fake_cluster_config():
    shape = node_types_from_config(FAKE)
    assert shape.max_workers == 2
    by_name = {t.name: t for t in shape.node_types}
    assert by_name["ray.head.default"].head and by_name["ray.head.default"].max_count == 1
    assert (by_name["gpu.a10g"].max_count, by_name["gpu.a10g"].head) == (2, False)


@pytest.mark.parametrize(
    "res, expected",
    [
        (_res(a10g=1), 2),  # one per a10g node, two nodes at most
        (_res(), 4),  # CPU-only: the head's 2 CPUs and one on each worker node
        (_res(cpus=2), 1),  # only the head holds 2 CPUs, once
        (_res(workers=2, a10g=1), 1),  # two workers per trial, spread over both nodes
        (_res(a10g=2), 0),  # no node holds two
    ],
)
def test_trials_at_once_counts_bundles_on_every_type_at_its_max(res, expected):
    assert trials_at_once(node_types_from_config(FAKE), res) == expected


def test_the_clusters_max_workers_caps_all_types_together_best_first():
    big = NodeType("big", {"CPU": 8, "GPU": 4}, max_count=3)
    small = NodeType("small", {"CPU": 8, "GPU": 1}, max_count=10)
    gpu_trial = _res(gpus=1)
    # 4 workers in all: the three big nodes (12 GPUs) first, then one small node.
    assert trials_at_once(ClusterShape((small, big), max_workers=4), gpu_trial) == 13
    assert trials_at_once(ClusterShape((small, big), max_workers=None), gpu_trial) == 22


def test_a_type_whose_hardware_the_provider_fills_in_limits_nothing_but_custom_resources():
    unfilled = NodeType("gpu", {"a10g": 1}, max_count=3)  # ray_cluster.yaml before bootstrap
    shape = ClusterShape((unfilled,))
    assert trials_at_once(shape, _res(cpus=8, gpus=1, a10g=1)) == 3
    assert unplaceable(shape, [_res(cpus=64, gpus=8, a10g=1)]) == []
    assert unplaceable(shape, [_res(l4=1)]) != []


def test_a_fixed_cluster_groups_its_live_nodes_and_drops_ray_bookkeeping():
    nodes = [
        ({"CPU": 2.0, "node:10.0.0.1": 1.0, "node:__internal_head__": 1.0}, True),
        ({"CPU": 4.0, "GPU": 1.0, "CPU_group_0_abc": 1.0, "bundle_group_abc": 1000.0}, False),
        ({"CPU": 4.0, "GPU": 1.0}, False),
    ]
    shape = node_types_from_nodes(nodes)
    assert not shape.autoscaling
    assert [(t.head, dict(t.resources), t.max_count) for t in shape.node_types] == [
        (True, {"CPU": 2.0}, 1),
        (False, {"CPU": 4.0, "GPU": 1.0}, 2),
    ]
    assert trials_at_once(shape, _res(gpus=1)) == 2


def test_head_bound_is_its_usable_memory_after_the_base_over_the_per_trial_cost():
    assert head_trial_bound(32 * GIB, 1.0 * GIB, base_bytes=3 * GIB, usable_fraction=0.75) == 21
    assert head_trial_bound(2 * GIB, 1.0 * GIB, base_bytes=3 * GIB) == 1  # never below one


def test_default_concurrency_is_the_smaller_of_nodes_and_head_memory():
    shape = node_types_from_config(FAKE)
    roomy_head = 1000 * GIB
    assert default_concurrency(shape, roomy_head, 1 * GIB, [_res(a10g=1)]) == 2
    tight_head = (HEAD_BASE_BYTES + 1.5 * GIB) / HEAD_USABLE_FRACTION
    assert default_concurrency(shape, tight_head, 1 * GIB, [_res()] * 5) == 1
    # Mixed shapes: the most trials of any one shape (the others queue, as they would anyway).
    assert default_concurrency(shape, roomy_head, 1 * GIB, [_res(a10g=1), _res()]) == 4


def test_a_resource_no_node_type_offers_is_refused_in_one_line_naming_the_types():
    shape = node_types_from_config(FAKE)
    with pytest.raises(UserError) as err:
        check_placeable(shape, [_res(a10g=1), _res(l4=1), _res(l4=1)])
    msg = str(err.value)
    assert "\n" not in msg and msg.count("l4: 1") == 1  # named once, for both trials
    assert "no node type offers l4" in msg
    assert "gpu.a10g {CPU: 1, GPU: 1, a10g: 1} up to 2" in msg and "ray.head.default" in msg


@pytest.mark.parametrize(
    "res, phrase",
    [
        (_res(gpus=2), "no node type holds it on one node"),
        (_res(workers=3, a10g=1), "3 workers x {CPU: 1, a10g: 1}: the cluster holds at most 2"),
    ],
)
def test_a_bundle_too_big_for_any_node_or_too_many_workers_is_refused(res, phrase):
    (problem,) = unplaceable(node_types_from_config(FAKE), [res])
    assert phrase in problem


def test_every_trial_that_fits_passes():
    check_placeable(node_types_from_config(FAKE), [_res(a10g=1), _res(workers=2, a10g=1)])


def _paper_trial_resources() -> list[dict]:
    spec = yaml.safe_load((ROOT / "tune_spaces" / "paper.yaml").read_text())
    resources = ResourcesSpec(**spec["resources"])
    return [resources.for_trial(size) for size in spec["models"]]


@pytest.mark.parametrize("config", ["ray_cluster.yaml", "deploy/ray_cluster_gcp.yaml"])
def test_the_paper_grid_fits_the_documented_clusters(config):
    shape = node_types_from_config(yaml.safe_load((ROOT / config).read_text()))
    trials = _paper_trial_resources()
    assert unplaceable(shape, trials) == []
    head = next(t for t in shape.node_types if t.head)
    assert head.resources == {"CPU": 8.0}  # m6i.2xlarge / n2-standard-8: 8 vCPU, 32 GiB
    bound = default_concurrency(shape, 32 * GIB, HEAD_BYTES_PER_TRIAL, trials)
    head_use = HEAD_BASE_BYTES + bound * HEAD_BYTES_PER_TRIAL
    assert head_use <= HEAD_USABLE_FRACTION * 32 * GIB  # the head's memory holds it
    assert bound < max(trials_at_once(shape, r) for r in trials)  # the head is what binds
    # docs/cluster.md gives the same arithmetic.
    docs = (ROOT / "docs" / "cluster.md").read_text()
    assert re.search(rf"\b{bound} trials at once\b", docs), f"docs/cluster.md: {bound} trials"


def test_an_unbounded_shape_is_bounded_by_the_head_alone():
    shape = ClusterShape((NodeType("any", {}, max_count=5),))
    assert trials_at_once(shape, _res()) == math.inf
    assert default_concurrency(shape, 32 * GIB, HEAD_BYTES_PER_TRIAL, [_res()]) == (
        head_trial_bound(32 * GIB)
    )
