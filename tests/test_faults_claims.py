"""Trial claims (slmscale.grid.claims): atomic, exclusive across processes, released when the
holder lets go or dies, kept beside the store so every driver of that store finds them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from slmscale.grid.claims import Claims, claims_dir

HOLD = """
import sys, time
from slmscale.grid.claims import Claims
c = Claims(sys.argv[1])
assert c.try_claim("k1")
print("held", flush=True)
time.sleep(600)
"""


def test_a_claim_excludes_others_until_released(tmp_path):
    a, b = Claims(tmp_path), Claims(tmp_path)
    assert a.try_claim("k1") and a.try_claim("k1")  # holding it again is a no-op
    assert not b.try_claim("k1")
    assert f"pid {os.getpid()}" in b.holder("k1")
    assert b.try_claim("k2")  # other keys are free
    a.release("k1")
    assert b.try_claim("k1")
    b.release_all()
    with Claims(tmp_path) as c:
        assert c.try_claim("k1") and c.try_claim("k2")
    assert a.try_claim("k1")


def test_a_killed_holder_leaves_no_stale_claim(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        assert not Claims(tmp_path).try_claim("k1")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert Claims(tmp_path).try_claim("k1")


def test_claims_live_beside_the_store(tmp_path):
    db = tmp_path / "a" / "mlflow.db"
    assert claims_dir(f"sqlite:///{db}", "s3://b/x", "3") == Path(f"{db}.claims") / "3"
    assert (
        claims_dir("http://h:5000", str(tmp_path / "st"), "3") == tmp_path / "st" / ".claims" / "3"
    )
    remote = claims_dir("http://h:5000", "s3://bucket/grids", "3")
    assert remote.name == "3" and "claims" in remote.parts
