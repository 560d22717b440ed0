"""A wrong name or a missing file is answered before anything heavy is imported.

`slmscale fit --experiment nosuchname` once took 15-42 s to say the name was wrong, 11.8 s of it
importing MLflow, torch and Ray.  Speed is not asserted here (the machine may be loaded); what
makes the answer fast is: each command below reports the mistake without importing any of
HEAVY, which the test checks in the child process itself.  `slmscale bench` shows the times.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("mlflow", "torch", "torchaudio", "ray", "transformers", "sklearn", "sentencepiece")

#: Runs the CLI, then reports which of HEAVY the process imported (on its last stderr line).
_CHILD = f"""
import sys
from slmscale.cli import main
rc = main(sys.argv[1:])
print("imported:", ",".join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)
sys.exit(rc)
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    from slmscale.audio.kmeans import save_centroids
    from slmscale.tracking.store import client
    from slmscale.train.synthetic import write_synthetic_units

    d = tmp_path_factory.mktemp("fast")
    write_synthetic_units(d / "units" / "smoke")
    (d / "smoke.yaml").write_text((ROOT / "tune_spaces" / "smoke.yaml").read_text())
    save_centroids(np.zeros((4, 80), np.float32), d / "km.npy")
    client(f"sqlite:///{d / 'mlflow.db'}").create_experiment("smoke")
    return d


CASES = {
    "status-unknown-experiment": (
        ["status", "smoke.yaml", "--experiment", "nosuch"],
        0,
        "experiment does not exist in this store; experiments there: 'smoke'",
    ),
    "status-missing-spec": (["status", "nope.yaml"], 2, "nope.yaml"),
    "eval-unknown-run": (
        ["eval", "--run-id", "0" * 32, "--benchmark", "sblimp=units/smoke:."],
        2,
        f"run {'0' * 32}: not found in sqlite:///",
    ),
    "eval-missing-benchmark": (
        ["eval", "--model", "m", "--benchmark", "sblimp=units/nope:."],
        2,
        "units/nope: not a units dataset",
    ),
    "eval-missing-model": (
        ["eval", "--model", "m", "--benchmark", "sblimp=units/smoke:."],
        2,
        "m: not a Hugging Face model directory",
    ),
    "tokenize-missing-kmeans": (
        ["tokenize", "--input", "x=units", "--kmeans", "nope.npy", "--out", "o"],
        2,
        "--kmeans nope.npy: no such file",
    ),
    "tokenize-missing-input": (
        ["tokenize", "--input", "x=nowhere", "--kmeans", "km.npy", "--out", "o"],
        2,
        "--input x=nowhere: no such file or directory",
    ),
    "kmeans-missing-input": (
        ["kmeans", "--input", "x=nowhere", "--out", "k.npy"],
        2,
        "--input x=nowhere",
    ),
    "unigram-missing-units": (["unigram", "--units", "nope", "--out", "u"], 2, "nope: not a units"),
    "grid-missing-spec": (["grid", "nope.yaml"], 2, "nope.yaml"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_mistake_is_one_line_before_any_heavy_import(workdir, case):
    argv, code, message = CASES[case]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SLMSCALE_HOME")}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, *argv],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    *err, imported = proc.stderr.splitlines()
    assert proc.returncode == code, proc.stderr
    assert message in proc.stdout + proc.stderr
    if code:
        assert len(err) == 1 and err[0].startswith(f"slmscale {argv[0]}: error: "), err
    assert imported == "imported: ", f"{' '.join(argv)} imported {imported[10:]} first"
