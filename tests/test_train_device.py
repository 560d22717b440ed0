"""No silent CPU: a trial that asked for a GPU where torch sees none stops at once, in one line,
with its run FAILED; with `train.allow_cpu_fallback` it trains on the CPU and its run says so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from slmscale.tracking import client
from slmscale.tracking.schema import PARAM_DEVICE, TAG_FAILURE, TAG_KIND
from slmscale.train.synthetic import write_synthetic_units

REPO = Path(__file__).resolve().parents[1]


def _train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [sys.executable, "-m", "slmscale.cli", "train", str(REPO / "tune_spaces" / "smoke.yaml")]
    args += [
        "resources.gpus_per_worker=1",
        "tokens=[4096]",
        "extra=[]",
        "models=[{name: tiny-a, layers: 1, dim: 32, heads: 2}]",
    ]
    args += [*overrides, "--tracking-uri", uri, "--storage-path", str(tmp_path / "st")]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, whatever the machine has
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)


def _runs(tmp_path: Path) -> list:
    c = client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = c.get_experiment_by_name("smoke")
    return [r for r in c.search_runs([exp.experiment_id]) if r.data.tags.get(TAG_KIND) == "train"]


@pytest.mark.timeout(1200)
def test_a_gpu_trial_without_cuda_fails_in_one_line_and_the_opt_in_trains_on_the_cpu(tmp_path):
    write_synthetic_units(tmp_path / "units" / "smoke")
    refused = _train(tmp_path)
    assert refused.returncode == 2, refused.stderr[-2000:]
    lines = [line for line in refused.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "asked for a GPU" in lines[0] and "allow_cpu_fallback" in lines[0]
    assert "Traceback" not in refused.stderr
    (run,) = _runs(tmp_path)
    assert run.info.status == "FAILED" and "asked for a GPU" in run.data.tags[TAG_FAILURE]
    opted = _train(tmp_path, "train.allow_cpu_fallback=true")
    assert opted.returncode == 0, opted.stderr[-2000:]
    (run,) = _runs(tmp_path)  # the same trial: its run resumed, now FINISHED on the CPU
    assert run.info.status == "FINISHED" and run.data.params[PARAM_DEVICE] == "cpu"
