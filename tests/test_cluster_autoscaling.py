"""The autoscaling path of docs/cluster.md on Ray's own autoscaler simulation (issue 28).

One machine plays the cluster `ray up` makes: a head with no GPU running Ray's default autoscaler
with the `fake_multinode` provider (tests/_autoscaler.py), and one worker type
`gpu.a10g {CPU: 1, GPU: 1, a10g: 1}`, min_workers 0, max_workers 2, idle timeout 6 s.  In order:

1. a trial no node type can hold (`{l4: 1}`) is refused, naming the resource and the node
   types, from what the running cluster says (`cluster_state.admit_grid`); the autoscaler's own
   infeasible report is found too, and a trial waiting on it says why (`pending_reason`);
2. the same through `slmscale grid` with RAY_ADDRESS: exit 2, one line, no run left RUNNING
   (slmscale.commands.grid.admit_on_cluster);
3. a small grid whose trials ask for `{GPU: 1, a10g: 1}`, submitted as a Ray job, scales worker
   nodes up from zero, trains every trial there and none on the head (Ray's state API: the node
   of every Ray Train worker actor), gives one FINISHED MLflow run per trial, each recording
   `device=cpu` (the fake GPU has no CUDA; the spec opts in to the CPU), and the cluster scales
   back to the head alone; meanwhile the reach check runs on each worker node as it joins;
4. stopping the cluster leaves no process of it on the machine.

Nothing is shared with other Ray instances on the machine (own temp dir, ports, token, session),
and everything is stopped by its process session in a finalizer, also on failure.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml
from _autoscaler import (
    BIN,
    ROOT,
    pids_of,
    processes_mentioning,
    start_fake_cluster,
    train_worker_nodes,
    trial_keys,
)

# Ceilings for a hung cluster on a loaded machine (load 10-40 seen), not speed checks.
pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(2400)]

WORKER_TYPE = "gpu.a10g"
A10G = {"CPU": 1, "GPU": 1, "a10g": 1, "object_store_memory": 200 * 1024**2}
IDLE_TIMEOUT_MIN = 0.1


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, request):
    work = tmp_path_factory.mktemp("autoscaling")
    holder = []

    def teardown():
        for c in holder:
            c.stop()

    request.addfinalizer(teardown)
    worker = {"resources": A10G, "min_workers": 0, "max_workers": 2}
    c = start_fake_cluster(
        work / "head", {WORKER_TYPE: worker}, idle_timeout_minutes=IDLE_TIMEOUT_MIN
    )
    holder.append(c)
    return c


def test_the_cluster_starts_with_the_head_alone_and_no_gpu(cluster):
    (head,) = cluster.alive_nodes()
    assert head["is_head"]
    assert head["resources"].get("GPU", 0) == 0 and "a10g" not in head["resources"]


def test_a_resource_no_node_type_offers_is_refused_and_reported_while_it_waits(cluster):
    out = cluster.python_json(
        """
import json, time, ray
from ray.util.placement_group import placement_group
from slmscale.errors import UserError
from slmscale.grid import cluster_state
ray.init()
l4 = {"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 0, "custom": {"l4": 1}}
a10g = dict(l4, custom={"a10g": 1})
try:
    cluster_state.admit_grid([a10g, l4])
    refused = None
except UserError as exc:
    refused = str(exc)
bound = cluster_state.admit_grid([a10g])
pg = placement_group([{"CPU": 1, "l4": 1}])  # what a trial's Train workers would ask
for _ in range(120):  # the autoscaler reports within a few updates (1 s each here)
    reported = cluster_state.autoscaler_infeasible({"CPU": 1.0, "l4": 1.0})
    if reported:
        break
    time.sleep(1)
reason = cluster_state.pending_reason({"CPU": 1.0, "l4": 1.0})
print(json.dumps({"refused": refused, "bound": bound, "reported": reported, "reason": reason}))
"""
    )
    refused = out["refused"]
    assert refused and "\n" not in refused
    assert "no node type offers l4" in refused
    assert "gpu.a10g {CPU: 1, GPU: 1, a10g: 1} up to 2" in refused and "ray.head.default" in refused
    # Two a10g nodes at most, one trial each; the head's memory allows more.
    assert out["bound"][0] == 2 and "autoscaler config" in out["bound"][1]
    assert "No available node types can fulfill" in out["reported"]
    assert out["reason"].startswith("pending: waiting for {CPU: 1, l4: 1}; autoscaler: ")
    assert "no node type offers l4" in out["reason"] and "gpu.a10g" in out["reason"]


def _spec(cluster, custom: dict, name: str, gpus: float = 0.0) -> Path:
    """Three trials of the smoke grid (two sizes, one 2-epoch run), pinned by `custom`; with
    `gpus`, each worker also asks for that many of the fake nodes' GPUs, which torch cannot
    see: the spec opts in to training on the CPU (train.allow_cpu_fallback)."""
    from slmscale.train.synthetic import write_synthetic_units

    units = cluster.workdir / "units" / "smoke"
    if not units.exists():
        write_synthetic_units(units, dataset="smoke")
    spec = yaml.safe_load((ROOT / "tune_spaces" / "smoke.yaml").read_text())
    spec.update(name=name, units=[{"path": str(units)}], tokens=[4096])
    spec["resources"] = {**spec.get("resources", {}), "custom": custom}
    if gpus:
        spec["resources"]["gpus_per_worker"] = gpus
        spec["train"] = {**spec["train"], "allow_cpu_fallback": True}
    path = cluster.workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _statuses(cluster, experiment: str) -> list[str]:
    """The status of every run of `experiment` (trials and the grid's own), none if it is absent."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(cluster.tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return [r.info.status for r in client.search_runs([found.experiment_id], max_results=1000)]


def test_grid_refuses_an_unplaceable_trial_in_one_line_with_exit_2(cluster):
    spec = _spec(cluster, {"l4": 1}, "infeasible")
    env = {**cluster.env, "RAY_ADDRESS": cluster.gcs_address}
    t0 = time.monotonic()
    out = subprocess.run(
        [str(BIN / "slmscale"), "grid", str(spec), "--storage-path", str(cluster.workdir / "r")],
        env=env,
        cwd=cluster.workdir,
        capture_output=True,
        text=True,
        timeout=60,  # a hang is what this test is about: a minute is the ceiling
    )
    print(f"refused in {time.monotonic() - t0:.1f} s: {out.stderr.strip().splitlines()[-1]}")
    assert out.returncode == 2, out.stderr[-3000:]
    errors = [line for line in out.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "l4" in errors[0] and "gpu.a10g" in errors[0], out.stderr
    assert _statuses(cluster, "infeasible").count("RUNNING") == 0


REACH_PROBE = """
import json, time, ray
from slmscale.grid.node_reach import NodeReach
ray.init()
reach = NodeReach({tracking!r}, {storage!r}, [{units!r}, "/nonexistent/units"])
seen = {{}}
deadline = time.monotonic() + 600
while time.monotonic() < deadline:  # until a worker node has joined and been asked
    for problem in reach.check_new_nodes(timeout_s=5):
        seen.setdefault(problem.split(":")[0], []).append(problem)
    workers = [n["NodeID"] for n in ray.nodes() if n["Alive"] and "a10g" in n["Resources"]]
    if any(w in reach.checked for w in workers):
        break
    time.sleep(2)
print(json.dumps({{"checked": reach.checked, "problems": seen}}))
"""


def _node_history(cluster) -> dict[str, dict]:
    """Every node the cluster ever had (alive or dead): {node id: {is_head, resources}}."""
    nodes = cluster.python_json(
        f"""
import json
from ray.util.state import list_nodes
print(json.dumps({{n.node_id: {{"is_head": n.is_head_node, "resources": n.resources_total,
                               "state": n.state}} for n in list_nodes(address={cluster.dashboard!r},
                                    detail=True, raise_on_missing_output=False)}}))
"""
    )
    return nodes


def _wait_job(cluster, submission_id: str, timeout_s: float) -> str:
    logs = subprocess.run(
        [str(BIN / "ray"), "job", "logs", "--address", cluster.dashboard, "--follow"]
        + [submission_id],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    ).stdout
    return logs


def _first_traceback(logs: str) -> str:
    """The first traceback in a job's logs (why a trial failed), or nothing."""
    at = logs.find("Traceback (most recent call last)")
    return logs[at : at + 4000] + "\n...\n" if at >= 0 else ""


def _job_status(cluster, submission_id: str) -> str:
    return cluster.python_json(
        f"""
import json
from ray.job_submission import JobSubmissionClient
print(json.dumps(str(JobSubmissionClient({cluster.dashboard!r}).get_job_status({submission_id!r}))))
"""
    )


def test_grid_scales_typed_workers_from_zero_trains_only_there_and_scales_back(cluster):
    spec = _spec(cluster, {"a10g": 1}, "autoscale", gpus=1)
    keys = trial_keys(spec, cluster.env)
    assert len(keys) == len(set(keys)) == 3  # two sizes x one budget, the 2-epoch run
    storage = cluster.workdir / "ray_results"
    t0 = time.monotonic()
    # No --tracking-uri and no --max-concurrent: the job finds the server through the cluster's
    # MLFLOW_TRACKING_URI, and the bound on trials in flight is the grid's default.
    submission, sub = cluster.submit(
        "slmscale", "grid", str(spec), "--storage-path", str(storage), timeout=300, wait=False
    )
    assert sub.returncode == 0, sub.stderr[-3000:]
    probe = REACH_PROBE.format(
        tracking=cluster.tracking_uri, storage=str(storage), units=str(spec.parent / "units")
    )
    reach = cluster.python_json(probe, timeout=1200)
    logs = _wait_job(cluster, submission, timeout_s=1500)
    elapsed = time.monotonic() - t0
    status = _job_status(cluster, submission)
    assert status.endswith("SUCCEEDED"), _first_traceback(logs) + logs[-3000:]
    print(f"grid as a Ray job on the autoscaling cluster: {elapsed:.0f} s")
    # the default bound: two a10g nodes at most, one trial each
    assert "cluster: 2 trials at once" in logs, logs[-3000:]

    nodes = _node_history(cluster)
    workers = train_worker_nodes(cluster.python, cluster.dashboard, submission)
    assert len(workers) == len(keys), workers  # one Train worker per trial, no restarts
    assert all(not nodes[n]["is_head"] and nodes[n]["resources"].get("a10g") for n in workers)
    assert len([n for n in nodes.values() if not n["is_head"]]) >= 1  # scaled up from zero

    from slmscale.tracking import runs_dataframe
    from slmscale.tracking.schema import PARAM_DEVICE, TAG_TRIAL_KEY

    runs = runs_dataframe(cluster.tracking_uri, ["autoscale"])
    assert sorted(runs[f"tags.{TAG_TRIAL_KEY}"]) == sorted(keys)  # one run per trial
    assert set(runs["status"]) == {"FINISHED"}
    # A GPU granted without working CUDA, opted in: each run says it trained on the CPU.
    assert set(runs[f"params.{PARAM_DEVICE}"]) == {"cpu"}
    assert set(_statuses(cluster, "autoscale")) == {"FINISHED"}  # the grid's own run too

    # The reach check ran on a worker node as it joined, and named it for the missing folder.
    worker_ids = {n for n, v in nodes.items() if not v["is_head"]}
    checked = set(reach["checked"]) & worker_ids
    assert checked, reach
    for node in checked:
        assert reach["checked"][node] == ["units /nonexistent/units: no such folder here"]

    # Back to the head alone once idle (idle timeout 6 s, autoscaler updates every second).
    (head,) = cluster.wait_for_nodes(1, timeout_s=600)
    assert head["is_head"]


def test_stopping_the_cluster_leaves_no_process_behind(cluster):
    cluster.stop()
    time.sleep(1)
    assert processes_mentioning(str(cluster.ray_tmp)) == []
    assert pids_of(cluster.sessions) == []
