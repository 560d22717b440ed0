"""A real multi-node run on one machine: the cluster path of docs/cluster.md, end to end.

A Ray head and a worker node (separate raylets, each started by `ray start`), an `mlflow server`
started by deploy/start_mlflow.sh, and the smoke grid submitted with `ray job submit`.  The spec
asks for a custom resource only the worker node has, so every trial must train there; the test
checks that against Ray's state API, checks that the server's store holds exactly one FINISHED
run per trial, and refits the laws from the server as a researcher would from a laptop.

Every process this module starts is stopped by a finalizer, even when a test fails: the Ray
daemons by the session ids of our two `ray start` calls (never `ray stop`, which would stop other
people's Ray on this machine), the MLflow server by its process group.  Token auth stays on, with
a token of our own passed in the environment (nothing is written to ~/.ray).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from _autoscaler import (
    BIN,
    OBJECT_STORE_BYTES,
    ROOT,
    cluster_env,
    free_port,
    launch_mlflow,
    ray_start,
    stop_mlflow,
    stop_sessions,
    train_worker_nodes,
    trial_keys,
)

# Timeouts are ceilings for a hung cluster, not speed checks: the machine may be loaded (load
# average 10-40 seen), so each is several times what an idle 2-core run takes.
pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(2400)]


@dataclass
class Cluster:
    env: dict
    dashboard: str  # http://127.0.0.1:<port>, what `ray job submit --address` takes
    tracking_uri: str
    workdir: Path

    def submit(self, *entrypoint: str, timeout: float) -> tuple[str, subprocess.CompletedProcess]:
        """`ray job submit` (waits for the job, streams its logs); (submission id, result)."""
        sid = f"slmscale-test-{secrets.token_hex(4)}"
        cmd = [str(BIN / "ray"), "job", "submit", "--address", self.dashboard]
        cmd += ["--submission-id", sid, "--", *entrypoint]
        return sid, subprocess.run(
            cmd, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def python(self, code: str, timeout: float = 180) -> str:
        """Run `code` here (not as a job) with the cluster's token; return its stdout."""
        out = subprocess.run(
            [sys.executable, "-c", code],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout


def _start_nodes(ray_tmp: Path, env: dict, sessions: set[int]) -> str:
    """A head (no custom resource) and a worker node with `worker_node`; the dashboard URL."""
    gcs, dashboard = free_port(), free_port()
    common = [
        "--node-ip-address=127.0.0.1",
        f"--temp-dir={ray_tmp}",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
        "--disable-usage-stats",
    ]
    head = [
        "--head",
        f"--port={gcs}",
        "--include-dashboard=true",  # `ray job submit` talks to the dashboard
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--ray-client-server-port={free_port()}",
        "--num-cpus=1",
        '--resources={"head_node": 1}',
    ]
    worker = [f"--address=127.0.0.1:{gcs}", "--num-cpus=3", '--resources={"worker_node": 3}']
    for args in (head, worker):
        # Two nodes on one machine: every fixed default port must be made unique per node.
        ports = [f"--dashboard-agent-listen-port={free_port()}"]
        ports += [f"--metrics-export-port={free_port()}"]
        ray_start(args + ports + common, env, sessions)
    return f"http://127.0.0.1:{dashboard}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, request) -> Cluster:
    work = tmp_path_factory.mktemp("cluster")
    # Ray's unix sockets live under the temp dir: keep its path short (108-byte socket limit).
    ray_tmp = Path(tempfile.mkdtemp(prefix="slr", dir="/tmp"))
    sessions: set[int] = set()
    env = cluster_env()
    state = work / "mlflow"
    launcher: list[subprocess.Popen] = []

    def teardown() -> None:
        stop_sessions(sessions)
        for proc in launcher:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stop_mlflow(state)
        shutil.rmtree(ray_tmp, ignore_errors=True)

    request.addfinalizer(teardown)

    mlflow_start, tracking_uri = launch_mlflow(state, env)
    launcher.append(mlflow_start)
    # Exported to the Ray processes, and so to jobs and trials, as ray_cluster.yaml does.
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    dashboard = _start_nodes(ray_tmp, env, sessions)
    out, _ = mlflow_start.communicate(timeout=1000)
    assert mlflow_start.returncode == 0, f"start_mlflow.sh failed:\n{out.decode()[-3000:]}"
    return Cluster(env, dashboard, tracking_uri, work)


def _node_ids(cluster: Cluster) -> dict[str, str]:
    """{"head": node id, "worker": node id}, once both raylets have registered."""
    code = f"""
import json, time
from ray.util.state import list_nodes
for _ in range(600):  # up to 5 min: a loaded machine registers raylets slowly
    nodes = [n for n in list_nodes(address={cluster.dashboard!r}) if n.state == "ALIVE"]
    if len(nodes) == 2:
        break
    time.sleep(0.5)
print(json.dumps({{("head" if n.is_head_node else "worker"): n.node_id for n in nodes}}))
"""
    return json.loads(cluster.python(code).splitlines()[-1])


PROBE = """
import json, ray
ray.init()
@ray.remote(num_cpus=0, resources={"worker_node": 1})
def where():
    return ray.get_runtime_context().get_node_id()
print("PROBE " + json.dumps({"driver": ray.get_runtime_context().get_node_id(),
                              "task": ray.get(where.remote())}))
"""


def test_a_task_asking_for_worker_node_runs_on_the_worker_node(cluster):
    nodes = _node_ids(cluster)
    assert set(nodes) == {"head", "worker"} and nodes["head"] != nodes["worker"]
    probe = cluster.workdir / "probe.py"
    probe.write_text(PROBE)
    _, out = cluster.submit(sys.executable, str(probe), timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("PROBE "))
    where = json.loads(line.removeprefix("PROBE "))
    assert where == {"driver": nodes["head"], "task": nodes["worker"]}


def _smoke_spec(cluster: Cluster) -> Path:
    """tune_spaces/smoke.yaml on a tiny units dataset, its trials pinned to the worker node.

    One more single-epoch trial than the smoke grid: Eq. 4 has five parameters, so the fit needs
    at least five single-epoch runs (smoke has 2 sizes x 2 budgets).
    """
    from slmscale.train.synthetic import write_synthetic_units

    units = write_synthetic_units(cluster.workdir / "units" / "smoke", dataset="smoke")
    spec = yaml.safe_load((ROOT / "tune_spaces" / "smoke.yaml").read_text())
    spec["units"] = [{"path": str(units)}]
    tiny_a = spec["models"][0]
    spec["extra"].append({"models": [tiny_a], "tokens": [2048], "epochs": [1]})
    spec["resources"] = {**spec.get("resources", {}), "custom": {"worker_node": 1}}
    path = cluster.workdir / "smoke.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_smoke_grid_submitted_as_a_job_trains_on_the_worker_and_tracks_in_the_server(cluster):
    from slmscale.tracking import get_experiment_id, runs_dataframe
    from slmscale.tracking.schema import KIND_FIT, TAG_TRIAL_KEY

    nodes = _node_ids(cluster)
    spec = _smoke_spec(cluster)
    keys = trial_keys(spec, cluster.env)
    assert len(keys) == len(set(keys)) == 6  # 2 sizes x 2 budgets, the 2-epoch run, ours

    storage = cluster.workdir / "ray_results"
    t0 = time.monotonic()
    # No --tracking-uri: the job finds the server through the cluster's MLFLOW_TRACKING_URI.
    submission, out = cluster.submit(
        "slmscale", "grid", str(spec), "--storage-path", str(storage), "--max-concurrent", "3",
        timeout=1500,
    )  # fmt: skip
    elapsed = time.monotonic() - t0
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-3000:]
    print(f"smoke grid as a Ray job: {elapsed:.0f} s")

    workers = train_worker_nodes(cluster.python, cluster.dashboard, submission)
    assert len(workers) == len(keys), workers  # one Train worker per trial, no restarts
    assert set(workers) == {nodes["worker"]}

    runs = runs_dataframe(cluster.tracking_uri, ["smoke"])
    assert sorted(runs[f"tags.{TAG_TRIAL_KEY}"]) == sorted(keys)  # one run per trial
    assert set(runs["status"]) == {"FINISHED"}
    assert get_experiment_id(cluster.tracking_uri, "smoke")

    # A researcher refits from the cluster's server, here rather than on the cluster.
    fit_json = cluster.workdir / "fit.json"
    fit = subprocess.run(
        [str(BIN / "slmscale"), "fit", "--experiment", "smoke", "--bootstrap", "20"]
        + ["--tracking-uri", cluster.tracking_uri, "--json", str(fit_json)],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert fit.returncode == 0, fit.stdout[-3000:] + fit.stderr[-3000:]
    doc = json.loads(fit_json.read_text())
    multi = runs[runs["params.epochs"].astype(float) > 1]["run_id"].tolist()
    assert (doc["law"], doc["n_points"]) == ("chinchilla", len(keys) - 1)  # the single-epoch runs
    assert [e["run_id"] for e in doc["excluded"]] == multi
    assert doc["source"]["tracking_uri"] == cluster.tracking_uri
    fits = runs_dataframe(cluster.tracking_uri, ["smoke"], kind=KIND_FIT)
    assert list(fits["status"]) == ["FINISHED"]  # the fit is logged back to the server
