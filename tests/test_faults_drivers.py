"""Faults at the driver (issue 21), as subprocesses on the smoke grid:

- Ctrl-C: SIGINT stops the grid; no run is left RUNNING (stopped ones are KILLED), the command
  says how to resume and exits 130; the rerun resumes into the same runs and finishes them.
- Two drivers on one spec and store, started together, on a fresh store and then on that
  existing store with more trials (there with two trials per Train job): every trial key has
  exactly one run, FINISHED, trained once, and both drivers exit 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from slmscale.tracking import client
from slmscale.tracking.schema import M_TOKENS_TRAINED, M_TRAIN_LOSS, TAG_KIND, TAG_TRIAL_KEY
from slmscale.train.synthetic import write_synthetic_units

REPO = Path(__file__).resolve().parents[1]
SMOKE_TRIALS = 5


def workdir(tmp_path: Path, spec_text: str | None = None) -> Path:
    write_synthetic_units(tmp_path / "units" / "smoke")
    text = spec_text or (REPO / "tune_spaces" / "smoke.yaml").read_text()
    (tmp_path / "smoke.yaml").write_text(text)
    return tmp_path


def _sigint_as_in_a_terminal() -> None:
    """A job started with `&` by a script (pytest run in the background, some CI runners)
    passes SIGINT on ignored, and Python then never raises KeyboardInterrupt: give the child the
    default disposition a foreground command in a terminal has."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def slmscale(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "slmscale.cli", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=_sigint_as_in_a_terminal,
    )


def grid_args(tmp_path: Path, *overrides: str) -> list[str]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = ["--tracking-uri", uri, "--storage-path", str(tmp_path / "st")]
    return ["grid", "smoke.yaml", *overrides, *store]


def wait_for(proc: subprocess.Popen, condition, what: str, poll_s: float = 0.2) -> None:
    """Poll `condition()` while `proc` runs (a ceiling of 600 s for a hang, not a speed test)."""
    deadline = time.monotonic() + 600
    while not condition():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"{what} not in 600 s"
        time.sleep(poll_s)


def long_train_trial(tmp_path: Path, spec_edit=lambda text: text) -> tuple[Path, str, list[str]]:
    """A smoke trial of 400k tokens (many passes over the tiny data) for `slmscale train`:
    (workdir, tracking uri, the command's arguments)."""
    text = (REPO / "tune_spaces" / "smoke.yaml").read_text()
    text = text.replace("tokens: [4096, 8192]\nepochs: [1]", "tokens: [400000]\nepochs: [auto]")
    wd = workdir(tmp_path, spec_edit(text))
    uri = f"sqlite:///{wd / 'mlflow.db'}"
    args = ["train", "smoke.yaml", "--index", "0", "--tracking-uri", uri, "--storage-path", "st"]
    return wd, uri, args


def train_runs(tmp_path: Path) -> list:
    c = client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = c.get_experiment_by_name("smoke")
    if exp is None:
        return []
    runs = c.search_runs([exp.experiment_id], max_results=1000)
    return [r for r in runs if r.data.tags.get(TAG_KIND) == "train"]


def finish(proc: subprocess.Popen, timeout: float = 900) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f"slmscale did not end in {timeout} s:\n{err[-3000:]}")
    return proc.returncode, err


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_ctrl_c_kills_runs_says_how_to_resume_exits_130_and_rerun_resumes(tmp_path):
    text = (REPO / "tune_spaces" / "smoke.yaml").read_text()
    # Trials long enough to be caught training (many passes over the tiny data), with
    # checkpoints: tiny-a and tiny-b at one budget, and the smoke grid's 2-epoch run.
    text = text.replace("tokens: [4096, 8192]\nepochs: [1]", "tokens: [250000]\nepochs: [auto]")
    n_trials = 3
    text = text.replace("checkpoint_every_steps: 8", "checkpoint_every_steps: 100")
    # Two trials at a time (0.9 CPU each: a Tune trial also holds 0.01): Ctrl-C catches both.
    text = text.replace("cpus_per_worker: 1}", "cpus_per_worker: 0.9}")
    assert "cpus_per_worker: 0.9}" in text
    wd = workdir(tmp_path, text)
    proc = slmscale(wd, *grid_args(wd))
    # A trial is mid-training once Ray has stored one of its checkpoints.
    wait_for(proc, lambda: list((wd / "st").glob("trial-*/checkpoint_*")), "a checkpoint", 0.5)
    checkpointed = {
        p.parent.name.removeprefix("trial-") for p in (wd / "st").glob("trial-*/checkpoint_*")
    }
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground process group
    rc, err = finish(proc, timeout=600)
    assert rc == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "resume with: slmscale grid smoke.yaml" in err, err[-3000:]
    runs = train_runs(wd)
    states = Counter(r.info.status for r in runs)
    assert states["RUNNING"] == 0, states
    killed = {r.data.tags[TAG_TRIAL_KEY]: r.info.run_id for r in runs if r.info.status == "KILLED"}
    reasons = {r.data.tags[TAG_TRIAL_KEY]: r.data.tags.get("slmscale.failure_reason") for r in runs}
    assert killed and set(killed) & checkpointed, (states, checkpointed, reasons, err[-2000:])
    assert states["FINISHED"] < n_trials

    rc, err = finish(slmscale(wd, *grid_args(wd)))
    assert rc == 0, err[-3000:]
    runs = train_runs(wd)
    by_key = Counter(r.data.tags[TAG_TRIAL_KEY] for r in runs)
    assert len(by_key) == n_trials and set(by_key.values()) == {1}, by_key
    assert all(r.info.status == "FINISHED" for r in runs)
    resumed = {r.data.tags[TAG_TRIAL_KEY]: r for r in runs if r.data.tags[TAG_TRIAL_KEY] in killed}
    for key, run_id in killed.items():
        run = resumed[key]
        assert run.info.run_id == run_id  # the same run, resumed
        assert run.data.metrics[M_TOKENS_TRAINED] == int(run.data.params["tokens"])


def two_drivers_together(wd: Path, n_trials: int, *overrides: str) -> None:
    a, b = slmscale(wd, *grid_args(wd, *overrides)), slmscale(wd, *grid_args(wd, *overrides))
    (rc_a, err_a), (rc_b, err_b) = finish(a), finish(b)
    assert (rc_a, rc_b) == (0, 0), (err_a[-3000:], err_b[-3000:])
    for err in (err_a, err_b):
        assert "Traceback" not in err, err[-3000:]
    runs = train_runs(wd)
    by_key = Counter(r.data.tags[TAG_TRIAL_KEY] for r in runs)
    assert len(by_key) == n_trials and set(by_key.values()) == {1}, by_key
    assert all(r.info.status == "FINISHED" for r in runs), [r.info.status for r in runs]
    # Each trial trained by one driver only: two trainers of one run would both log its curve.
    c = client(f"sqlite:///{wd / 'mlflow.db'}")
    for r in runs:
        steps = [m.step for m in c.get_metric_history(r.info.run_id, M_TRAIN_LOSS)]
        assert steps and len(steps) == len(set(steps)), (r.data.tags[TAG_TRIAL_KEY], sorted(steps))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_two_drivers_started_together_on_a_fresh_then_an_existing_store_train_each_trial_once(
    tmp_path,
):
    wd = workdir(tmp_path)
    assert not (wd / "mlflow.db").exists()
    # A fresh store (both drivers create it at once): the 4,096-token budget only, 3 trials.
    two_drivers_together(wd, 3, "tokens=[4096]")
    # The same store again with the whole grid: 2 new trials, 3 FINISHED to skip; two trials
    # per Train job, each driver packing the trials it claimed.
    two_drivers_together(wd, SMOKE_TRIALS, "resources.trials_per_job=2")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ctrl_c_in_train_kills_the_run_and_the_rerun_resumes_it(tmp_path):
    wd, _, args = long_train_trial(
        tmp_path, lambda t: t.replace("checkpoint_every_steps: 8", "checkpoint_every_steps: 100")
    )
    proc = slmscale(wd, *args)
    wait_for(proc, lambda: list((wd / "st").glob("trial-*/checkpoint")), "a checkpoint")
    os.killpg(proc.pid, signal.SIGINT)
    rc, err = finish(proc, timeout=300)
    assert rc == 130, err[-3000:]
    assert "resume with: slmscale train smoke.yaml" in err and "Traceback" not in err, err[-3000:]
    (run,) = train_runs(wd)
    assert run.info.status == "KILLED"

    rc, err = finish(slmscale(wd, *args))
    assert rc == 0, err[-3000:]
    (again,) = train_runs(wd)
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    assert again.data.metrics[M_TOKENS_TRAINED] == 400000


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_second_train_of_a_claimed_trial_waits_then_skips_it(tmp_path):
    wd, uri, args = long_train_trial(tmp_path)
    first = slmscale(wd, *args)
    wait_for(first, lambda: train_runs(wd), "the first train's run")
    second = slmscale(wd, *args)
    (rc1, err1), (rc2, err2) = finish(first), finish(second)
    assert (rc1, rc2) == (0, 0), (err1[-3000:], err2[-3000:])
    assert "waiting for it" in err2 and "already FINISHED" in err2, err2[-3000:]
    (run,) = train_runs(wd)
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client(uri).get_metric_history(run.info.run_id, M_TRAIN_LOSS)]
    assert len(steps) == len(set(steps)), sorted(steps)  # trained once
