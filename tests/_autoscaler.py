"""Ray clusters on one machine for tests: process bookkeeping, an MLflow server, and an
autoscaling cluster on Ray's own `fake_multinode` provider (docs/cluster.md, issue 28).

The autoscaling cluster is what `ray up` makes, minus the cloud: `RAY_FAKE_CLUSTER=1 ray start
--head --autoscaling-config=...` runs Ray's default (v1) autoscaler, whose provider starts each
worker node as a raylet of its own on this machine, from zero, and stops it after the idle
timeout.  What the recipe needs (measured on Ray 2.60, issue 28):

- the head's node type is named `ray.head.default`, and `provider.gcs_address` is set (our GCS
  port is not 6379, which is another engineer's);
- the config is complete: every list the cluster launcher expects, even when empty (the 2.60
  wheel lacks `fake_multi_node/example.yaml`, so `ray.cluster_utils.AutoscalingCluster` and the
  v2 autoscaler fail);
- the head starts in a folder with no `slmscale/` folder in it: Ray puts the job's working folder
  first on every worker's sys.path, and a checkout's `slmscale/` there shadows the install.

Nothing is shared with other Ray instances on the machine: our own temp dir (short: unix
sockets), free ports, a token of our own in the environment (nothing written to ~/.ray), and
every process started in a new session, stopped by that session id (never `ray stop`, which
stops every Ray on the machine).  The fake worker nodes are children of the head's autoscaler
and keep its session, so they are found the same way.

Both cluster tests (test_cluster_loopback, test_cluster_autoscaling) and
scripts/measure_head_memory.py use these helpers: one module, so that the bookkeeping of what
was started, and how it is stopped, exists once (hence a little over 400 lines).
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OBJECT_STORE_BYTES = 200 * 1024**2
HEAD_TYPE = "ray.head.default"  # the only head name the fake provider knows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _parents() -> dict[int, int]:
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
    return parent


def descendants(roots: set[int], parent: dict[int, int] | None = None) -> set[int]:
    """`roots` and every process below them."""
    parent = _parents() if parent is None else parent
    found, frontier = set(roots), list(roots)
    while frontier:
        p = frontier.pop()
        for child, ppid in parent.items():
            if ppid == p and child not in found:
                found.add(child)
                frontier.append(child)
    return found


def pids_of(sessions: set[int]) -> list[int]:
    """Processes in our sessions, plus their descendants (the job driver gets its own session)."""
    parent = _parents()
    members = set()
    for pid in parent:
        try:
            if os.getsid(pid) in sessions:
                members.add(pid)
        except OSError:
            continue
    return sorted(descendants(members, parent))


def stop_sessions(sessions: set[int], grace_s: float = 4.0) -> None:
    """SIGTERM every process we started (by pid), SIGKILL what is left after `grace_s`.

    Pids seen in the first pass are killed in the second too: a process whose parent died in
    between is reparented out of our tree (its session stays ours, but a job driver's does not).
    """
    seen: set[int] = set()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = set(pids_of(sessions))
        if sig == signal.SIGKILL:
            pids |= {p for p in seen if Path(f"/proc/{p}").exists()}
        seen |= pids
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while pids_of(sessions) and time.monotonic() < deadline:
            time.sleep(0.2)


def processes_mentioning(text: str) -> list[str]:
    """`pid cmdline` of every live process whose command line contains `text` (leftovers)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmd:
            found.append(f"{entry} {cmd[:200]}")
    return found


def launch_mlflow(state: Path, env: dict) -> tuple[subprocess.Popen, str]:
    """deploy/start_mlflow.sh with SQLite and a local artifact folder, bound to 127.0.0.1.

    Launched, not awaited (`proc.communicate()`): the server starts while the Ray nodes do.
    """
    port = free_port()
    env = {
        **env,
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_WORKERS": "1",
        "MLFLOW_BIN": str(BIN / "mlflow"),
        "SLMSCALE_STATE_DIR": str(state),
        "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{state / 'mlflow.db'}",
        "MLFLOW_START_TIMEOUT_S": "900",
    }
    script = ["bash", str(ROOT / "deploy" / "start_mlflow.sh"), str(state / "artifacts"), str(port)]
    proc = subprocess.Popen(script, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def stop_mlflow(state: Path) -> None:
    """The server is the leader of its own process group (setsid): end that group, by its id."""
    pidfile = state / "mlflow.pid"
    if not pidfile.exists():
        return
    group = int(pidfile.read_text())
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            return
        time.sleep(1)


def ray_start(args: list[str], env: dict, sessions: set[int], cwd: Path | None = None) -> None:
    """`ray start ARGS` in a new session (its daemons keep that session id: how we stop them)."""
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", *args],
        env=env,
        cwd=cwd,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sessions.add(proc.pid)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"ray start {' '.join(args)} failed:\n{out[-3000:]}"


def cluster_env(extra: dict | None = None) -> dict:
    """This process's environment minus any Ray/MLflow address, plus a token of our own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "MLFLOW_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=secrets.token_hex(32),
        RAY_USAGE_STATS_ENABLED="0",
        **(extra or {}),
    )
    return env


def autoscaling_config(
    gcs_address: str,
    worker_types: dict[str, dict],
    *,
    head_cpus: int,
    idle_timeout_minutes: float,
) -> dict:
    """A complete cluster-launcher config for the fake_multinode provider.

    `worker_types`: {name: {"resources": {...}, "min_workers": m, "max_workers": n}}; the
    resources must be complete (CPU, GPU): there is no cloud to fill them in.
    """
    types = {name: {"node_config": {}, **spec} for name, spec in worker_types.items()}
    types[HEAD_TYPE] = {
        "resources": {"CPU": head_cpus, "GPU": 0},
        "node_config": {},
        "max_workers": 0,
    }
    return {
        "cluster_name": "slmscale-fake",
        "max_workers": sum(t.get("max_workers", 0) for t in worker_types.values()),
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": idle_timeout_minutes,
        "provider": {
            "type": "fake_multinode",
            "gcs_address": gcs_address,
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "auth": {},
        "available_node_types": types,
        "head_node_type": HEAD_TYPE,
        "docker": {},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


@dataclass
class FakeCluster:
    """A running autoscaling cluster; `stop()` ends every process it started."""

    env: dict
    gcs_address: str
    dashboard: str  # http://127.0.0.1:<port>, what `ray job submit --address` takes
    config_path: Path
    workdir: Path  # the head's working folder (no slmscale/ in it), and scratch for the test
    ray_tmp: Path
    tracking_uri: str = ""
    sessions: set[int] = field(default_factory=set)
    mlflow_state: Path | None = None

    def python(self, code: str, timeout: float = 300) -> str:
        """Run `code` in a fresh interpreter with the cluster's token and address (other Rays may
        run on this machine: "auto" would be ambiguous); return its stdout."""
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**self.env, "RAY_ADDRESS": self.gcs_address},
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout

    def python_json(self, code: str, timeout: float = 300):
        """`python(code)` whose last line that parses as JSON (object, list or string) is the
        answer (Ray's driver may print autoscaler events, "(autoscaler +25s) Resized to ...",
        after it)."""
        lines = self.python(code, timeout).strip().splitlines()
        for line in reversed(lines):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
        raise AssertionError(f"no JSON line in the output: {lines[-5:]}")

    def alive_nodes(self) -> list[dict]:
        """[{node_id, is_head, resources}] of the ALIVE nodes, from Ray's state API."""
        return self.python_json(
            f"""
import json
from ray.util.state import list_nodes
# Filtered here, not by the API: with a filter that drops dead nodes, Ray 2.60 reports the
# dropped ones as missing output and raises.
nodes = list_nodes(address={self.dashboard!r}, detail=True, raise_on_missing_output=False)
print(json.dumps([{{"node_id": n.node_id, "is_head": n.is_head_node,
                   "resources": n.resources_total}} for n in nodes if n.state == "ALIVE"]))
"""
        )

    def wait_for_nodes(self, count: int, timeout_s: float) -> list[dict]:
        """Poll until exactly `count` nodes are ALIVE (scale-down takes the idle timeout)."""
        deadline = time.monotonic() + timeout_s
        while True:
            nodes = self.alive_nodes()
            if len(nodes) == count or time.monotonic() > deadline:
                return nodes
            time.sleep(3)

    def submit(self, *entrypoint: str, timeout: float, wait: bool = True):
        """`ray job submit` (waits and streams logs unless `wait` is False); (id, result)."""
        sid = f"slmscale-test-{secrets.token_hex(4)}"
        cmd = [str(BIN / "ray"), "job", "submit", "--address", self.dashboard]
        cmd += ["--submission-id", sid, *([] if wait else ["--no-wait"]), "--", *entrypoint]
        return sid, subprocess.run(
            cmd, env=self.env, cwd=self.workdir, capture_output=True, text=True, timeout=timeout
        )

    def stop(self) -> None:
        stop_sessions(self.sessions)
        if self.mlflow_state is not None:
            stop_mlflow(self.mlflow_state)
        shutil.rmtree(self.ray_tmp, ignore_errors=True)


def start_fake_cluster(
    workdir: Path,
    worker_types: dict[str, dict],
    *,
    head_cpus: int = 2,
    idle_timeout_minutes: float = 0.1,
    with_mlflow: bool = True,
) -> FakeCluster:
    """Start an autoscaling cluster (and an MLflow server); the caller must `stop()` it, also
    when this raises (the returned object is made first, then filled: use it in a `finally`).

    The head has no GPU; AUTOSCALER_UPDATE_INTERVAL_S=1 lets the autoscaler react within a
    second instead of five.  MLFLOW_TRACKING_URI is exported to the Ray processes, as
    ray_cluster.yaml does, so jobs and trials find the server.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    assert not (workdir / "slmscale").exists()
    ray_tmp = Path(tempfile.mkdtemp(prefix="sla", dir="/tmp"))  # unix sockets: keep it short
    gcs, dashboard = free_port(), free_port()
    gcs_address = f"127.0.0.1:{gcs}"
    # Ray's memory monitor would judge every fake node by this whole shared machine's memory,
    # other sessions' use included, and kill our workers for it (seen: the job's supervisor).
    env = cluster_env(
        {
            "RAY_FAKE_CLUSTER": "1",
            "AUTOSCALER_UPDATE_INTERVAL_S": "1",
            "RAY_memory_monitor_refresh_ms": "0",
        }
    )
    config = autoscaling_config(
        gcs_address, worker_types, head_cpus=head_cpus, idle_timeout_minutes=idle_timeout_minutes
    )
    config_path = workdir / "autoscaler.yaml"
    config_path.write_text(json.dumps(config, indent=1))
    cluster = FakeCluster(
        env, gcs_address, f"http://127.0.0.1:{dashboard}", config_path, workdir, ray_tmp
    )
    _CLEANUP.append(cluster)
    launcher = None
    if with_mlflow:
        cluster.mlflow_state = workdir / "mlflow"
        launcher, cluster.tracking_uri = launch_mlflow(cluster.mlflow_state, env)
        env["MLFLOW_TRACKING_URI"] = cluster.tracking_uri
    head = [
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs}",
        f"--temp-dir={ray_tmp}",
        f"--autoscaling-config={config_path}",
        f"--num-cpus={head_cpus}",
        "--num-gpus=0",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
        "--include-dashboard=true",  # `ray job submit` talks to the dashboard
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        "--disable-usage-stats",
    ]
    ray_start(head, env, cluster.sessions, cwd=workdir)
    if launcher is not None:
        out, _ = launcher.communicate(timeout=1000)
        assert launcher.returncode == 0, f"start_mlflow.sh failed:\n{out.decode()[-3000:]}"
    return cluster


def train_worker_nodes(run_python, dashboard: str, submission_id: str) -> list[str]:
    """Node id of every Ray Train worker actor the job created (alive or dead); `run_python`
    runs code with the cluster's token and returns its stdout."""
    code = f"""
import json
from ray.job_submission import JobSubmissionClient
from ray.util.state import list_actors
job_id = JobSubmissionClient({dashboard!r}).get_job_info({submission_id!r}).job_id
actors = list_actors(address={dashboard!r}, filters=[("job_id", "=", job_id)],
                     limit=10000, detail=True, raise_on_missing_output=False)
print(json.dumps([[a.class_name, a.node_id] for a in actors]))
"""
    actors = json.loads(run_python(code).strip().splitlines()[-1])
    return [node for cls, node in actors if cls == "RayTrainWorker"]


def trial_keys(spec: Path, env: dict) -> list[str]:
    """The trial keys of a spec, from `slmscale grid --dry-run`."""
    out = subprocess.run(
        [str(BIN / "slmscale"), "grid", str(spec), "--dry-run", "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return [row["trial_key"] for row in json.loads(out.stdout)]


_CLEANUP: list[FakeCluster] = []  # what an interrupted test run still has to stop (atexit)


def _stop_all() -> None:
    for cluster in _CLEANUP:
        cluster.stop()


atexit.register(_stop_all)
