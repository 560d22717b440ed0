"""Where outputs go: everything under one output root (default: the working directory)."""

from __future__ import annotations

import os
from pathlib import Path

ENV_OUTPUT_ROOT = "SLMSCALE_HOME"


def output_root() -> Path:
    """`$SLMSCALE_HOME` if set, else the current working directory."""
    return Path(os.environ.get(ENV_OUTPUT_ROOT) or Path.cwd()).resolve()
