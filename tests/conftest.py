"""Shared test settings: keep thread pools small on the 2-core CI machine and MLflow quiet."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Token pools (slmscale.corpus) are cached on disk; keep the tests' pools out of the system temp.
import shutil  # noqa: E402
import tempfile  # noqa: E402

_POOL_CACHE = tempfile.mkdtemp(prefix="slmscale-test-cache-")
os.environ["SLMSCALE_CACHE"] = _POOL_CACHE


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_POOL_CACHE, ignore_errors=True)
