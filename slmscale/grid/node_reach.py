"""Can a node reach the tracking server, the storage path and the units?  Asked on the node itself.

`slmscale.cluster.node_local_problems` judges the *shape* of the URIs once, on the driver, at
start; on a cluster that scales from zero that is the head alone, so it can only warn (issue 28).
Here the question goes to each worker node when it joins: a zero-CPU Ray task pinned to the node
(`NodeAffinitySchedulingStrategy(soft=False)`) opens the tracking server's /health, stats the
storage path and the units, and answers with what failed.  A node that cannot reach them is
then named before (or while) a trial trains on it:

    reach = NodeReach(tracking_uri, storage_path, units_paths)
    for problem in reach.check_new_nodes():      # in the grid loop, every few seconds
        ...                                      # "node 10.0.3.7 (id ...a1b2c3d4): ..."

`reach_problems` is the check itself, with no Ray: a Train worker can also call it on its own
node before it trains.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Iterable
from urllib.parse import urlparse


def _tracking_problem(uri: str, timeout_s: float) -> str | None:
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        url = uri.rstrip("/") + "/health"  # the MLflow server's liveness endpoint
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as reply:
                if reply.status == 200:
                    return None
                return f"tracking server {uri} answers {reply.status} at /health"
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return f"tracking server {uri} unreachable ({reason})"
    if parsed.scheme == "sqlite":
        path = uri.split(":///", 1)[-1] if ":///" in uri else ""
        if path and not os.path.exists(path):
            return f"tracking store {uri}: no such file here"
    return None


def _storage_problem(path: str) -> str | None:
    scheme = urlparse(path).scheme
    if scheme and scheme != "file" and len(scheme) > 1:
        import pyarrow.fs

        try:
            fs, inner = pyarrow.fs.FileSystem.from_uri(path)
            fs.get_file_info(inner)  # needs credentials and the network
        except Exception as exc:  # any failure to reach it is the answer
            return f"storage path {path} unreachable ({str(exc).splitlines()[0]})"
        return None
    local = urlparse(path).path if scheme == "file" else path
    existing = local
    while existing and not os.path.exists(existing):
        existing = os.path.dirname(existing.rstrip("/"))
    if not existing or not os.access(existing, os.W_OK):
        return f"storage path {path} is not writable here"
    return None


def reach_problems(
    tracking_uri: str, storage_path: str, units_paths: Iterable[str], timeout_s: float = 10.0
) -> list[str]:
    """What this machine cannot reach, one phrase each (empty: all reachable)."""
    problems = [
        _tracking_problem(tracking_uri, timeout_s),
        _storage_problem(storage_path),
        *(f"units {p}: no such folder here" for p in units_paths if not os.path.exists(p)),
    ]
    return [p for p in problems if p]


def _node_label(node: dict) -> str:
    """node 10.0.3.7 (id ...a1b2c3d4, accelerator_type:A10G): how `ray status` users know it."""
    kind = next((k for k in node.get("Resources", {}) if k.startswith("accelerator_type:")), "")
    ip = node.get("NodeManagerAddress", "?")
    short = node.get("NodeID", "")[-8:]
    return f"node {ip} (id ...{short}{', ' + kind if kind else ''})"


class NodeReach:
    """Ask every node once, when first seen alive, whether it reaches what trials need.

    Non-blocking for a grid loop: each call sends the question to nodes not yet asked and
    collects the answers that came back within `timeout_s`; the others are collected later.
    """

    def __init__(self, tracking_uri: str, storage_path: str, units_paths: Iterable[str]) -> None:
        self.args = (tracking_uri, storage_path, list(units_paths))
        self.checked: dict[str, list[str]] = {}  # node id -> its problems
        self._asked: dict = {}  # ObjectRef -> the node (ray.nodes() entry) it was sent to

    def check_new_nodes(self, timeout_s: float = 0.0) -> list[str]:
        """Problems found on the nodes that answered since the last call, each naming its node.

        A node that died under the question is asked again if it comes back.
        """
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        probe = ray.remote(num_cpus=0, max_retries=0)(reach_problems)
        waiting = {node["NodeID"] for node in self._asked.values()}
        for node in ray.nodes():
            node_id = node["NodeID"]
            if node.get("Alive") and node_id not in self.checked and node_id not in waiting:
                strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)
                self._asked[probe.options(scheduling_strategy=strategy).remote(*self.args)] = node
        if not self._asked:
            return []
        refs = list(self._asked)
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
        problems = []
        for ref in done:
            node = self._asked.pop(ref)
            try:
                found = ray.get(ref)
            except Exception:  # the node died under the question: ask again if it comes back
                continue
            self.checked[node["NodeID"]] = found
            problems += [f"{_node_label(node)}: {p}" for p in found]
        return problems
