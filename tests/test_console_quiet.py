"""Without `-v` a stage prints slmscale's own lines only: no Ray, Ray Data or C++ core chatter.

Before: `slmscale tokenize` on a few files printed Ray's token-auth warning, "Started a local Ray
instance", the C++ core's "Set ray log level ..." and Ray Data's streaming_executor INFO lines
and progress-bar warning between its own.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from slmscale.audio.kmeans import save_centroids
from slmscale.audio.synthetic import write_audio

#: What `slmscale tokenize` itself writes to stderr (every line starts with one of these).
OWN_STDERR = ("tokenize: ", "token store: ")


@pytest.mark.slow
def test_tokenize_through_ray_prints_only_its_own_lines(tmp_path):
    for i, name in enumerate(("s1/a", "s1/b", "s2/c")):
        write_audio(tmp_path / "corpus" / f"{name}.flac", 1.5, 16000, 1, freq=150.0 + 90 * i)
    rng = np.random.default_rng(0)
    save_centroids(rng.standard_normal((20, 80)).astype(np.float32) - 8.0, tmp_path / "km.npy")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    proc = subprocess.run(
        [sys.executable, "-m", "slmscale.cli", "tokenize", "--input", "ls=corpus",
         "--kmeans", "km.npy", "--out", "units", "--engine", "ray", "--num-actors", "1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.splitlines()
    assert any(line.startswith("tokenize: 3 inputs") for line in err), proc.stderr
    foreign = [line for line in err if not line.startswith(OWN_STDERR)]
    assert not foreign, "not slmscale's lines:\n" + "\n".join(foreign)
    out = proc.stdout
    assert "inputs 3 = tokenized 3 + rejected 0" in out
    assert not any(w in out for w in ("INFO", "WARNING", "Ray instance")), out
