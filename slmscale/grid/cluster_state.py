"""The running cluster's side of slmscale.grid.cluster_limits: its node types, the head's memory,
and why a trial waits (issue 28).  Call these from the driver, after `ray.init`.

Where the node types come from, first found wins (public Ray APIs only: the cluster config that
autoscaler v2 and KubeRay keep in the GCS has no public reader in Ray 2.60, so it is not read):

1. the config file of the head's autoscaler (Ray's default, v1, autoscaler started by
   `ray start --head --autoscaling-config=FILE`, which is what `ray up` runs; the file is
   `~/ray_bootstrap_config.yaml`, with CPU and GPU filled in from the instance types).  The v1
   autoscaler publishes no node types, so this is read from its command line: the driver must
   run on the head, as `ray job submit` runs it;
2. a cluster without an autoscaler (`ray start` by hand): its live nodes, as they are.

None when neither applies (a driver off the head of a v1 autoscaling cluster): then nothing is
refused up front and only the autoscaler's own report (`autoscaler_infeasible`) can say.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping

from slmscale.grid.cluster_limits import (
    HEAD_BYTES_PER_TRIAL,
    ClusterShape,
    bundles_per_node,
    check_placeable,
    default_concurrency,
    fmt_resources,
    node_types_from_config,
    node_types_from_nodes,
    unplaceable,
)

MONITOR_SCRIPT = "autoscaler/_private/monitor.py"
INFEASIBLE_EVENT = "No available node types can fulfill"


def _gcs_port() -> str:
    import ray

    return ray.get_runtime_context().gcs_address.rsplit(":", 1)[-1]


def _monitor_args(gcs_port: str) -> list[str] | None:
    """The command line of this cluster's autoscaler monitor, if it runs on this machine."""
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if any(a.endswith(MONITOR_SCRIPT) for a in cmd) and any(
            a.startswith("--gcs-address=") and a.rsplit(":", 1)[-1] == gcs_port for a in cmd
        ):
            return cmd
    return None


def _nodes() -> list[tuple[str, dict, bool]]:
    """(node id, resources, is head) of every alive node (Ray's public state API)."""
    from ray.util.state import list_nodes

    return [
        (n.node_id, dict(n.resources_total), bool(n.is_head_node))
        for n in list_nodes(filters=[("state", "=", "ALIVE")], raise_on_missing_output=False)
    ]


def _live_nodes() -> ClusterShape:
    shape = node_types_from_nodes([(resources, head) for _, resources, head in _nodes()])
    return ClusterShape(shape.node_types, None, source="its live nodes", autoscaling=False)


def read_cluster_shape() -> ClusterShape | None:
    """The node types of the connected cluster (module docstring); None when unknown."""
    import yaml

    args = _monitor_args(_gcs_port())
    if args is None:
        return None
    path = next((a.split("=", 1)[1] for a in args if a.startswith("--autoscaling-config=")), None)
    if path is None:  # a monitor without a config: no autoscaler, the nodes are all there is
        return _live_nodes()
    path = os.path.expanduser(path)
    with open(path) as f:
        shape = node_types_from_config(yaml.safe_load(f))
    return ClusterShape(shape.node_types, shape.max_workers, source=f"autoscaler config {path}")


def head_memory_bytes() -> int:
    """The head's physical memory: this machine's when the driver runs on the head (as a Ray job
    does), else Ray's `memory` resource of the head (about 70% of its free memory at start)."""
    import psutil
    import ray

    here = ray.get_runtime_context().get_node_id()
    for node_id, resources, head in _nodes():
        if head:
            if node_id == here:
                return int(psutil.virtual_memory().total)
            return int(resources.get("memory", 0))
    return int(psutil.virtual_memory().total)


def admit_grid(
    trial_resources: Iterable, max_concurrent: int | None = None
) -> tuple[int | None, str]:
    """On a cluster the grid joins: refuse trials no node type can ever place (UserError, one
    line naming the resource and the node types), and the bound on trials in flight.

    Returns (bound, how it was found): `max_concurrent` when given, else
    `cluster_limits.default_concurrency` from the node types and the head's memory; (None, why)
    when the node types cannot be read here (then Tune's default: every trial at once).
    """
    trials = list(trial_resources)
    shape = read_cluster_shape()
    if shape is not None:
        check_placeable(shape, trials)
    if max_concurrent is not None:
        return max_concurrent, "--max-concurrent"
    if shape is None:
        return None, "node types unknown here (driver off the head?): no default bound"
    head = head_memory_bytes()
    bound = default_concurrency(shape, head, HEAD_BYTES_PER_TRIAL, trials)
    why = (
        f"{bound} trials at once: the node types ({shape.source}) and the head's "
        f"{head / 1024**3:.0f} GiB at {HEAD_BYTES_PER_TRIAL / 1e9:.1f} GB per trial in flight"
    )
    return bound, why


def admit_on_cluster(
    trial_resources: Iterable, max_concurrent: int | None = None, stream=None
) -> int | None:
    """What `slmscale grid` calls before it opens any MLflow run.

    On a cluster it joins (RAY_ADDRESS set, as under `ray job submit`): connect, refuse trials
    no node type can ever place (UserError: one line, exit 2), and return the bound on trials
    in flight (`admit_grid`), saying how it was found on `stream`.  Elsewhere (a local Ray,
    whose limit is the grid's own) `max_concurrent` is returned unchanged and Ray is not started.
    """
    if not os.environ.get("RAY_ADDRESS"):
        return max_concurrent
    import ray

    from slmscale.console import init_ray

    if not ray.is_initialized():
        init_ray(log_to_driver=True)  # trial logs must reach `ray job logs`
    bound, why = admit_grid(trial_resources, max_concurrent)
    print(f"cluster: {why}", file=stream or sys.stderr)
    return bound


def _autoscaler_events(limit: int = 200) -> list[str]:
    """The autoscaler's recent messages (Ray's cluster events), oldest first."""
    from ray.util.state import list_cluster_events

    events = list_cluster_events(
        filters=[("source_type", "=", "AUTOSCALER")],
        limit=limit,
        raise_on_missing_output=False,
    )
    return [e["message"] if isinstance(e, dict) else e.message for e in events]


def _matches(message: str, bundle: Mapping[str, float]) -> bool:
    """Whether an autoscaler message names this bundle ({'CPU': 1.0, 'l4': 1.0} in any order)."""
    return all(f"'{k}': {float(v)}" in message for k, v in bundle.items())


def autoscaler_infeasible(bundle: Mapping[str, float]) -> str | None:
    """The autoscaler's own report that no node type can fulfill `bundle`, if it made one."""
    for message in reversed(_autoscaler_events()):
        if INFEASIBLE_EVENT in message and _matches(message, bundle):
            return message
    return None


def pending_text(
    bundle: Mapping[str, float],
    *,
    never: list[str],
    infeasible: str | None,
    launching: Mapping[str, int],
    latest: str | None,
    node_types: str,
) -> str:
    """ "pending: waiting for {a10g: 1}; autoscaler: ..." from what the cluster reports, most
    decisive first: no node type can ever hold it (ours, then the autoscaler's own report),
    nodes being started for it, the autoscaler's latest message."""
    text = f"pending: waiting for {fmt_resources(bundle)}; autoscaler: "
    if never:
        return text + f"{never[0]} (node types: {node_types})"
    if infeasible:
        return text + f"no node type can fulfill it (node types: {node_types})"
    if launching:
        return text + "starting " + ", ".join(f"{n} x {t}" for t, n in sorted(launching.items()))
    if latest:
        return text + latest.strip().rstrip(".")
    return text + "no node is being started (those that can hold it are busy or at max_workers)"


def pending_reason(bundle: Mapping[str, float]) -> str:
    """Why a trial whose workers each need `bundle` is not training, from the cluster's state:
    the node types (cluster_limits), Ray's cluster events (the autoscaler's messages: its
    infeasible report, "Adding 1 node(s) of type ..."), and the pending launches of
    `ray.autoscaler.v2.sdk.get_cluster_status` (filled by autoscaler v2 only)."""
    import ray
    from ray.autoscaler.v2.sdk import get_cluster_status

    shape = read_cluster_shape()
    never = unplaceable(shape, [_as_trial(bundle)]) if shape is not None else []
    launching: dict[str, int] = {}
    status = get_cluster_status(ray.get_runtime_context().gcs_address)
    for launch in status.pending_launches:
        name = launch.ray_node_type_name
        launching[name] = launching.get(name, 0) + int(launch.count)
    events = _autoscaler_events()
    infeasible = next(
        (m for m in reversed(events) if INFEASIBLE_EVENT in m and _matches(m, bundle)), None
    )
    # The latest message about a node type that can hold the bundle ("Adding 1 node(s) of type
    # gpu.a10g."); messages about other demands would mislead.
    fitting = (
        [t.name for t in shape.node_types if bundles_per_node(t, bundle) >= 1] if shape else []
    )
    latest = next((m for m in reversed(events) if any(f"type {t}" in m for t in fitting)), None)
    return pending_text(
        bundle,
        never=never,
        infeasible=infeasible,
        launching=launching,
        latest=latest,
        node_types=shape.describe() if shape is not None else "unknown here",
    )


def _as_trial(bundle: Mapping[str, float]) -> dict:
    """A one-worker trial asking for exactly `bundle` (cluster_limits speaks trial resources)."""
    custom = {k: v for k, v in bundle.items() if k not in ("CPU", "GPU")}
    return {
        "workers": 1,
        "cpus_per_worker": bundle.get("CPU", 0.0),
        "gpus_per_worker": bundle.get("GPU", 0.0),
        "custom": custom,
    }
