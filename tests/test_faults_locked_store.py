"""A busy store is waited for (issue 21): another process holds a SQLite write transaction longer
than MLflow's own 20 s busy timeout while a trial writes its run.  The trial's writes retry with
backoff and the run ends FINISHED; with a retry window shorter than the lock, the command says in
one line which store and call, and exits 2."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slmscale.cli import main
from slmscale.tracking import client, get_or_create_experiment
from slmscale.tracking.schema import M_TEST_LOSS_FINAL
from slmscale.train.synthetic import write_synthetic_units

REPO = Path(__file__).resolve().parents[1]
TRACKING_RETRY_ENV = "SLMSCALE_TRACKING_RETRY_S"  # slmscale.tracking.store.TRACKING_RETRY_ENV
MLFLOW_BUSY_TIMEOUT_S = 20  # `PRAGMA busy_timeout = 20000` in mlflow/store/db/utils.py
HOLD_S = MLFLOW_BUSY_TIMEOUT_S + 6

HOLDER = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN IMMEDIATE")  # the write lock: readers go on, every other writer waits
con.execute("UPDATE experiments SET last_update_time = last_update_time")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.execute("COMMIT")
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    write_synthetic_units(tmp_path / "units" / "smoke")
    shutil.copy(REPO / "tune_spaces" / "smoke.yaml", tmp_path / "smoke.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def hold_write_lock(db: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_train_waits_out_a_write_lock_longer_than_mlflows_busy_timeout(
    workdir, capsys, monkeypatch
):
    db = workdir / "mlflow.db"
    uri = f"sqlite:///{db}"
    exp_id = get_or_create_experiment(uri, "smoke")  # the store exists before the lock is taken
    capsys.readouterr()

    # A retry window shorter than the lock: one line naming the store, exit 2, no traceback.
    monkeypatch.setenv(TRACKING_RETRY_ENV, "1")
    holder = hold_write_lock(db, HOLD_S)
    assert main(["train", "smoke.yaml", "--index", "0", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "still failing after 1 s" in err[-1] and uri in err[-1], err
    assert "database is locked" in err[-1] and TRACKING_RETRY_ENV in err[-1]
    holder.wait(timeout=120)

    # The default window: the trial waits the lock out and finishes, one run, FINISHED.
    monkeypatch.delenv(TRACKING_RETRY_ENV)
    holder = hold_write_lock(db, HOLD_S)
    t0 = time.monotonic()
    try:
        assert main(["train", "smoke.yaml", "--index", "0", "--tracking-uri", uri]) == 0
    finally:
        holder.wait(timeout=120)
    assert holder.returncode == 0 and time.monotonic() - t0 > MLFLOW_BUSY_TIMEOUT_S
    runs = client(uri).search_runs([exp_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.metrics[M_TEST_LOSS_FINAL] > 0
    assert os.environ.get(TRACKING_RETRY_ENV) is None


ONE_TRIAL = """name: smoke
units: [{path: units/smoke}]
models: [{name: tiny-a, layers: 1, dim: 32, heads: 2}]
tokens: [8192]
epochs: [auto]
batch_size: 4
context: 64
optimizer: {warmup_min_steps: 2, lr_max: 3.0e-3, lr_min: 3.0e-4}
eval: {n_evals: 4}
train: {precision: fp32, checkpoint_every_steps: 8, deterministic: true}
resources: {workers: 1, cpus_per_worker: 1, max_failures: 0}
"""

TRAIN_STATUS = (
    "SELECT r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
    "WHERE t.key = 'slmscale.kind' AND t.value = 'train'"
)


def train_statuses(db: Path) -> list[str]:
    import sqlite3

    try:
        con = sqlite3.connect(db, timeout=1)
        try:
            return [row[0] for row in con.execute(TRAIN_STATUS)]
        finally:
            con.close()
    except sqlite3.Error:  # not created yet, or busy
        return []


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_grid_trial_waits_out_the_lock_and_the_exit_code_agrees_with_its_run(workdir):
    (workdir / "one.yaml").write_text(ONE_TRIAL)
    db = workdir / "mlflow.db"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop(TRACKING_RETRY_ENV, None)
    args = ["grid", "one.yaml", "--tracking-uri", f"sqlite:///{db}"]
    args += ["--storage-path", str(workdir / "st")]
    grid = subprocess.Popen(
        [sys.executable, "-m", "slmscale.cli", *args],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 600
    while "RUNNING" not in train_statuses(db):  # the trial has opened its run: lock the store
        assert grid.poll() is None, grid.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # Long enough that writes made in the trial's first 25 s wait past MLflow's 20 s timeout.
    holder = hold_write_lock(db, HOLD_S + 20)
    try:
        _, err = grid.communicate(timeout=800)
    finally:
        holder.wait(timeout=120)
    assert grid.returncode == 0, err[-3000:]
    assert train_statuses(db) == ["FINISHED"], err[-3000:]
