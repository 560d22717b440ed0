"""A quiet console by default: slmscale's own progress, not Ray's, Tune's or MLflow's chatter.

What a grid printed before this (measured on `slmscale demo --quick`): Ray's start-up banner, an
error-level `core_worker.cc ... max_restarts` line from the C++ core worker, Tune's experiment box
and TensorBoard hint pointing into Ray's temp folder, MLflow's "Creating initial database tables"
and alembic's migration lines.  None of it helps a researcher; all of it hides the trial table.

`quiet_platform_logs()` raises those loggers to WARNING (ERROR for the known-noisy ones) and sets
the environment the Ray processes read at start (the C++ backend log level, Tune's verbosity),
so workers started later inherit it.  `slmscale -v COMMAND` leaves everything as the libraries
set it.  Nothing here hides slmscale's own warnings or errors.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import warnings
from contextlib import contextmanager

#: Python loggers that are informative to library authors, not to users of a grid.
NOISY_LOGGERS = {
    "ray": logging.ERROR,
    "ray.tune": logging.ERROR,
    "ray.train": logging.ERROR,
    "ray.data": logging.WARNING,
    "mlflow": logging.WARNING,
    "mlflow.store.db.utils": logging.WARNING,
    "alembic": logging.WARNING,
    "alembic.runtime.migration": logging.WARNING,
    "urllib3": logging.WARNING,
    "filelock": logging.WARNING,
    "torch.distributed": logging.WARNING,
}

#: Read by Ray's processes when they start (set before `ray.init`; children inherit them).
QUIET_ENV = {
    "RAY_BACKEND_LOG_LEVEL": "fatal",  # the C++ core worker's stderr lines (e.g. max_restarts)
    "RAY_AIR_NEW_OUTPUT": "0",  # Tune/Train's boxed console reporter
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no TensorBoard/CSV/JSON logger hints
    "RAY_DEDUP_LOGS": "1",
    # Tune's trial actors hold 0.01 CPU, so a grid starts more Python workers than CPUs and the
    # raylet prints "N PYTHON worker processes have been started ... 6x the maximum expected
    # startup concurrency" through Ray's error channel (no logger to quiet).  Ray's own knob:
    "RAY_worker_maximum_startup_concurrency": "16",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}

_quiet = False


def quiet_platform_logs() -> None:
    """Hide platform boilerplate for this process and the Ray processes it starts."""
    global _quiet
    for name, level in NOISY_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(ray|mlflow)(\.|$)")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"(ray|mlflow)(\.|$)")
    _quiet = True


def is_quiet() -> bool:
    """Whether boilerplate is hidden (e.g. `ray.init(logging_level=...)` asks this)."""
    return _quiet


def ray_logging_level() -> int:
    """The level to pass to `ray.init`: Ray resets its own logger there."""
    return logging.ERROR if _quiet else logging.INFO


def init_ray(**kwargs) -> None:
    """`ray.init`, quiet unless `-v`: the one way slmscale starts (or joins) Ray.

    Ray sets up its logger inside `ray.init`, before it starts a local instance, so the level
    has to be passed in: raised beforehand it is reset, and the token-auth warning and "Started
    a local Ray instance" reach the terminal.
    """
    import ray

    kwargs.setdefault("logging_level", ray_logging_level())
    if not _quiet:
        ray.init(**kwargs)
        return
    with _stderr_without(BACKEND_LEVEL_NOTICE):
        ray.init(**kwargs)


#: The one line Ray's C++ core prints whenever RAY_BACKEND_LOG_LEVEL is set (at INFO, before the
#: level takes effect).  The variable has to be set: it keeps the driver's C++ errors about
#: actors (e.g. Ray Data's "constructor arguments in the object store and max_restarts > 0")
#: off the terminal.
BACKEND_LEVEL_NOTICE = re.compile(rb"logging\.cc:\d+: Set ray log level from environment variable")


@contextmanager
def _stderr_without(pattern: re.Pattern):
    """Run the block with file descriptor 2 in a temporary file, then write back every line but
    those matching `pattern` (C++ writes to the descriptor, past Python's `sys.stderr`).

    Processes Ray starts meanwhile (GCS, raylet, monitors) write to their own log files.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [line for line in tmp.read().splitlines(True) if not pattern.search(line)]
            if kept:
                os.write(2, b"".join(kept))


def quiet_ray_data() -> None:
    """Ray Data's console output down to errors (call after `import ray.data`).

    Ray Data configures its own logger when imported (after `quiet_platform_logs` ran): INFO
    lines per dataset ("Starting execution of Dataset ...", "execution finished") and a warning
    that progress bars are off.  Its log file in the Ray session folder keeps all of it.
    """
    if not _quiet:
        return
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            handler.setLevel(logging.ERROR)
