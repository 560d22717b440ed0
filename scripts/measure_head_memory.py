"""Measure the Ray head's memory per trial in flight (issue 28; docs/cluster.md "The head's memory").

    python scripts/measure_head_memory.py --trials 5 --max-workers 2 --out head_memory.json

Starts Ray's fake_multinode autoscaling cluster on this machine (tests/_autoscaler.py: a head
with no GPU, worker nodes {CPU: 1, GPU: 1, a10g: 1} from zero), submits `slmscale grid` on a
tiny spec whose trials ask for {a10g: 1} as a Ray job with every trial in flight at once
(`--max-concurrent` = trials: some train on worker nodes, the others wait for one), and samples
every few seconds:

- the proportional set size (PSS, /proc/PID/smaps_rollup) of the head's processes: everything
  the head's `ray start` started and their descendants (GCS, dashboard, raylet, the job's
  driver, the Tune trial actors and Train controllers), minus the fake worker nodes (raylets
  the autoscaler started, and theirs), which on a real cluster are other machines;
- the trials in flight: Tune trial actors alive on the head (process title `ray::ImplicitFunc`);
- the MLflow server's processes (deploy/start_mlflow.sh, here with one worker), apart.

PSS charges shared pages (Python, torch) to the processes sharing them, so the sum over the
head is what the head's memory holds.  The figure per trial is the slope of a least-squares
line of PSS on trials in flight; idle is the head before the job.  Everything started is
stopped by its process session at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from _autoscaler import BIN, _parents, descendants, pids_of, start_fake_cluster  # noqa: E402

TRIAL_TITLE = "ray::ImplicitFunc"  # a Tune function trial's actor


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _pss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def head_processes(sessions: set[int]) -> list[int]:
    """Our processes minus the fake worker nodes: the autoscaler monitor's child raylets and
    log monitors, and every descendant of those raylets (their agents and Train workers)."""
    parent = _parents()
    ours = set(pids_of(sessions))
    monitors = {p for p in ours if "autoscaler/_private/monitor.py" in _cmdline(p)}
    node_roots = {p for p in ours if parent.get(p) in monitors}
    return sorted(ours - descendants(node_roots, parent))


def _group(pgid: int) -> list[int]:
    """The processes of one process group (the MLflow server's: start_mlflow.sh runs setsid)."""
    return [p for p in _parents() if _pgid(p) == pgid]


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def sample(sessions: set[int], mlflow_pgid: int | None = None) -> dict:
    pids = head_processes(sessions)
    titles = [_cmdline(p).split(" ")[0] for p in pids]
    mlflow = _group(mlflow_pgid) if mlflow_pgid else []
    return {
        "t": time.time(),
        "pss_bytes": sum(_pss_bytes(p) for p in pids),
        "mlflow_pss_bytes": sum(_pss_bytes(p) for p in mlflow),
        "processes": len(pids),
        "in_flight": sum(t.startswith(TRIAL_TITLE) for t in titles),
        "titles": sorted(t for t in titles if t.startswith("ray::")),
    }


def write_spec(workdir: Path, trials: int, tokens: int) -> Path:
    from slmscale.train.synthetic import write_synthetic_units

    units = write_synthetic_units(workdir / "units", dataset="smoke", n_train=2000)
    spec = yaml.safe_load((ROOT / "tune_spaces" / "smoke.yaml").read_text())
    spec.update(
        name="headmem",
        units=[{"path": str(units)}],
        models=[spec["models"][0]],
        tokens=[tokens + 64 * i for i in range(trials)],  # distinct trials, about equal length
        epochs=["auto"],
        extra=[],
        resources={"workers": 1, "cpus_per_worker": 1, "custom": {"a10g": 1}},
    )
    path = workdir / "headmem.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def slope(samples: list[dict]) -> tuple[float, float]:
    """Least-squares PSS = idle + per_trial x in_flight over the samples: (intercept, slope)."""
    x = np.array([s["in_flight"] for s in samples], float)
    y = np.array([s["pss_bytes"] for s in samples], float)
    per_trial, intercept = np.polyfit(x, y, 1)
    return float(intercept), float(per_trial)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--max-workers", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=200_000)
    ap.add_argument("--every", type=float, default=3.0, help="seconds between samples")
    ap.add_argument("--out", default="head_memory.json")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="headmem"))
    worker = {"resources": {"CPU": 1, "GPU": 1, "a10g": 1, "object_store_memory": 200 * 1024**2}}
    worker.update(min_workers=0, max_workers=args.max_workers)
    cluster = None
    try:
        cluster = start_fake_cluster(work / "cluster", {"gpu.a10g": worker})
        spec = write_spec(cluster.workdir, args.trials, args.tokens)
        mlflow_pgid = int((cluster.mlflow_state / "mlflow.pid").read_text())
        time.sleep(10)
        idle = [sample(cluster.sessions, mlflow_pgid) for _ in range(3)]
        sid, _ = cluster.submit(
            "slmscale", "grid", str(spec), "--storage-path", str(work / "runs"),
            "--max-concurrent", str(args.trials), timeout=120, wait=False,
        )  # fmt: skip
        samples = []
        while True:
            s = sample(cluster.sessions, mlflow_pgid)
            samples.append(s)
            print(f"{s['in_flight']} in flight, {s['processes']} processes, "
                  f"{s['pss_bytes'] / 1e9:.2f} GB", flush=True)  # fmt: skip
            status = subprocess.run(
                [str(BIN / "ray"), "job", "status", "--address",
                 cluster.dashboard, sid], env=cluster.env, capture_output=True, text=True,
            ).stdout  # fmt: skip
            if any(w in status.lower() for w in ("succeeded", "failed", "stopped")):
                break
            time.sleep(args.every)
        intercept, per_trial = slope(idle + samples)
        peak = max(samples, key=lambda s: (s["in_flight"], s["pss_bytes"]))
        result = {
            "machine": os.uname().nodename,
            "load_average": os.getloadavg(),
            "trials": args.trials,
            "max_workers": args.max_workers,
            "idle_pss_bytes": float(np.median([s["pss_bytes"] for s in idle])),
            "intercept_bytes": intercept,
            "per_trial_bytes": per_trial,
            "peak": peak,
            "job_status": status.strip().splitlines()[-1:],
            "samples": idle + samples,
        }
        Path(args.out).write_text(json.dumps(result, indent=1))
        print(
            f"idle {result['idle_pss_bytes'] / 1e9:.2f} GB; per trial in flight "
            f"{per_trial / 1e9:.2f} GB (fit over {len(samples)} samples); peak "
            f"{peak['in_flight']} in flight = {peak['processes']} processes, "
            f"{peak['pss_bytes'] / 1e9:.2f} GB"
        )
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
