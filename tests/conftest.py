"""Shared test settings (small thread pools on the 2-core CI machine, MLflow quiet, token
stores in a private folder) and the `inject_faults` fixture (tests/faultinject)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Token stores (slmscale.tokenstore) live in the default store folder unless told otherwise;
# keep the tests' stores out of the system temp folder and remove them at the end.
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

_STORE_CACHE = tempfile.mkdtemp(prefix="slmscale-test-cache-")
os.environ["SLMSCALE_CACHE"] = _STORE_CACHE

sys.path.insert(0, str(Path(__file__).resolve().parent / "faultinject"))
import slmscale_faults  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_STORE_CACHE, ignore_errors=True)


@pytest.fixture
def inject_faults(monkeypatch):
    """`inject({trial key or "*": {fault: value}})`: faults in this process's training core and
    in every process started after it (Ray workers, CLI commands); see slmscale_faults.py."""

    def inject(spec: dict[str, dict]) -> None:
        slmscale_faults.install(spec, monkeypatch.setattr)
        for name, value in slmscale_faults.env(spec).items():
            monkeypatch.setenv(name, value)

    return inject
