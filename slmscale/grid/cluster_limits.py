"""What a Ray cluster can hold: trials in flight at once, and trials it can never place (issue 28).

Pure arithmetic on node types and trial resources, no Ray import: unit tested without a
cluster.  The edge that reads a running cluster is slmscale.grid.cluster_state.

When a grid joins a cluster, two things bound the trials in flight:

- the node types: what the autoscaler can ever launch (each type's `max_workers` x its
  resources, all worker types together at most the cluster's `max_workers`) trains only so many
  trials at once; more only queue;
- the head's memory: every trial in flight holds processes on the head (its Tune trial actor,
  its Train controller and their helpers) whether it trains or waits, measured at
  `HEAD_BYTES_PER_TRIAL` (docs/cluster.md).  The head also serves GCS, the dashboard, the
  driver and MLflow (`HEAD_BASE_BYTES`), and Ray's memory monitor kills processes at 95% use.

A per-worker bundle that no node type offers can never be placed: Ray's autoscaler only logs
"No available node types can fulfill resource request", and Train retries the placement (for
about an hour under the grid's settings, slmscale.grid.trainable), so the trial would wait to
fail.  `unplaceable` names such trials before the grid starts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from slmscale.errors import UserError

# Measured (scripts/measure_head_memory.py, docs/cluster.md "The head's memory"): proportional
# set size of the head's processes per trial in flight, and what the head holds besides trials.
HEAD_BYTES_PER_TRIAL = int(1.3e9)  # a training trial; a waiting one about 1.0 GB
HEAD_BASE_BYTES = 3 * 1024**3
HEAD_USABLE_FRACTION = 0.85  # Ray's memory monitor kills workers at 0.95 of the node's memory

# Resources a cloud provider fills in from the instance type when a config leaves them out.
HARDWARE = ("CPU", "GPU", "memory", "object_store_memory")


@dataclass(frozen=True)
class NodeType:
    """One kind of node the cluster has or can launch."""

    name: str
    resources: Mapping[str, float]
    max_count: int  # the most nodes of this type at once (a fixed cluster: how many are up)
    head: bool = False

    def amount(self, resource: str) -> float:
        """What one node offers of `resource`; inf where a provider fills it in (a type that
        declares neither CPU nor GPU, as in ray_cluster.yaml before `ray up` bootstraps it)."""
        if resource in self.resources:
            return float(self.resources[resource])
        filled_by_provider = not any(k in self.resources for k in ("CPU", "GPU"))
        return math.inf if resource in HARDWARE and filled_by_provider else 0.0

    def describe(self) -> str:
        count = "head" if self.head else f"up to {self.max_count}"
        shown = {
            k: v for k, v in self.resources.items() if k not in ("memory", "object_store_memory")
        }
        return f"{self.name} {fmt_resources(shown)} {count}"


@dataclass(frozen=True)
class ClusterShape:
    """Every node type, the cap on worker nodes over all types, and where this was read."""

    node_types: tuple[NodeType, ...]
    max_workers: int | None = None
    source: str = ""
    autoscaling: bool = True

    def describe(self) -> str:
        return ", ".join(t.describe() for t in self.node_types)


def fmt_resources(resources: Mapping[str, float]) -> str:
    """{a10g: 1, CPU: 4}: the way the grid spec writes resources."""
    return "{" + ", ".join(f"{k}: {float(v):g}" for k, v in sorted(resources.items())) + "}"


def worker_bundle(res: Mapping) -> dict[str, float]:
    """The Ray resources one Train worker of a trial asks for (`ResourcesSpec.for_trial` shape)."""
    return demand(res)[1]


def demand(res) -> tuple[int, dict[str, float]]:
    """(workers, the Ray resources of one worker) of a trial: a `config.grid.TrialResources`
    (its `per_worker()`), or the same fields as a dict."""
    if hasattr(res, "per_worker"):
        workers, bundle = int(res.workers), dict(res.per_worker())
    else:
        workers = int(res.get("workers", 1))
        bundle = {"CPU": float(res.get("cpus_per_worker", 1.0)), **res.get("custom", {})}
        if float(res.get("gpus_per_worker", 0.0)) > 0:
            bundle["GPU"] = float(res["gpus_per_worker"])
    return workers, {k: float(v) for k, v in bundle.items() if float(v) > 0}


def node_types_from_config(config: Mapping) -> ClusterShape:
    """The node types of a cluster-launcher config (`available_node_types`, `head_node_type`)."""
    head = config.get("head_node_type")
    types = []
    for name, spec in config.get("available_node_types", {}).items():
        is_head = name == head
        count = 1 if is_head else int(spec.get("max_workers", config.get("max_workers", 0)))
        resources = {k: float(v) for k, v in (spec.get("resources") or {}).items()}
        types.append(NodeType(name, resources, count, head=is_head))
    cap = config.get("max_workers")
    return ClusterShape(tuple(types), None if cap is None else int(cap))


def node_types_from_nodes(nodes: Iterable[tuple[Mapping[str, float], bool]]) -> ClusterShape:
    """A fixed cluster: its live nodes `(total resources, is head)`, alike ones as one type."""
    groups: dict[tuple, int] = {}
    for resources, is_head in nodes:
        # Not what a trial can ask for: node:<ip> markers and placement-group bookkeeping.
        kept = {k: float(v) for k, v in resources.items() if not _bookkeeping(k)}
        key = (not is_head, tuple(sorted(kept.items())))  # the head first
        groups[key] = groups.get(key, 0) + 1
    types = [
        NodeType("head" if not worker else f"worker group {i}", dict(items), n, head=not worker)
        for i, ((worker, items), n) in enumerate(sorted(groups.items()))
    ]
    return ClusterShape(tuple(types), None, autoscaling=False)


def _bookkeeping(resource: str) -> bool:
    return resource.startswith(("node:", "bundle_group_")) or "_group_" in resource


def bundles_per_node(node: NodeType, bundle: Mapping[str, float]) -> float:
    """How many copies of `bundle` one node of this type holds (inf: nothing limits it)."""
    return min((_floor(node.amount(k) / v) for k, v in bundle.items() if v > 0), default=math.inf)


def _floor(x: float) -> float:
    return x if math.isinf(x) else float(math.floor(x + 1e-9))


def max_bundles(shape: ClusterShape, bundle: Mapping[str, float]) -> float:
    """Copies of `bundle` the cluster holds at once, every type at its max count: worker nodes
    are taken best first up to the cluster's `max_workers`; the head counts once."""
    total, left = 0.0, math.inf if shape.max_workers is None else shape.max_workers
    for node in sorted(shape.node_types, key=lambda t: -bundles_per_node(t, bundle)):
        per_node = bundles_per_node(node, bundle)
        if per_node <= 0:
            continue
        count = node.max_count if node.head else min(node.max_count, left)
        total += per_node * count if count else 0.0
        left -= 0 if node.head else count
    return total


def trials_at_once(shape: ClusterShape, res) -> float:
    """Trials with resources `res` the cluster trains at once (a trial needs `workers` bundles;
    Train places them with PACK, so one trial may span nodes)."""
    workers, bundle = demand(res)
    return _floor(max_bundles(shape, bundle) / workers)


def head_trial_bound(
    head_memory_bytes: float,
    per_trial_bytes: float = HEAD_BYTES_PER_TRIAL,
    base_bytes: float = HEAD_BASE_BYTES,
    usable_fraction: float = HEAD_USABLE_FRACTION,
) -> int:
    """Trials in flight the head's memory holds at `per_trial_bytes` each (at least 1)."""
    spare = head_memory_bytes * usable_fraction - base_bytes
    return max(1, int(spare // per_trial_bytes))


def default_concurrency(
    node_types: ClusterShape,
    head_memory_bytes: float,
    per_trial_bytes: float,
    trial_resources: Iterable,
) -> int:
    """The default bound on trials in flight when a grid joins a cluster.

    The most trials of any one resource shape the node types hold at once (more would only
    queue, each holding processes on the head), and no more than the head's memory holds.
    """
    fits = [trials_at_once(node_types, res) for res in _distinct(trial_resources)]
    by_nodes = max(fits, default=math.inf)
    bound = min(by_nodes, head_trial_bound(head_memory_bytes, per_trial_bytes))
    return max(1, int(bound))


def unplaceable(shape: ClusterShape, trial_resources: Iterable) -> list[str]:
    """One phrase per distinct trial resources the cluster can never place (empty: all fit)."""
    problems = []
    for res in _distinct(trial_resources):
        workers, bundle = demand(res)
        missing = [k for k in bundle if not any(t.amount(k) > 0 for t in shape.node_types)]
        if missing:
            problems.append(
                f"{fmt_resources(bundle)} per worker: no node type offers "
                + ", ".join(sorted(missing))
            )
        elif not any(bundles_per_node(t, bundle) >= 1 for t in shape.node_types):
            problems.append(
                f"{fmt_resources(bundle)} per worker: no node type holds it on one node"
            )
        elif max_bundles(shape, bundle) < workers:
            held = int(max_bundles(shape, bundle))
            problems.append(
                f"{workers} workers x {fmt_resources(bundle)}: the cluster holds at most {held}"
            )
    return problems


def check_placeable(shape: ClusterShape, trial_resources: Iterable) -> None:
    """Refuse, in one line, a grid with trials that no node of this cluster can ever train."""
    problems = unplaceable(shape, trial_resources)
    if problems:
        where = f" ({shape.source})" if shape.source else ""
        raise UserError(
            f"resources: {'; '.join(problems)}; the cluster's node types{where}: {shape.describe()}"
        )


def _distinct(trial_resources: Iterable) -> list:
    seen, out = set(), []
    for res in trial_resources:
        workers, bundle = demand(res)
        key = (workers, tuple(sorted(bundle.items())))
        if key not in seen:
            seen.add(key)
            out.append(res)
    return out
