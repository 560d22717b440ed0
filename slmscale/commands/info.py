"""`slmscale info`: what this installation is, whether it works, and where it writes.

It runs torchaudio's native kernels once (`slmscale.install_check`): a torch/torchaudio pair that
does not load together is reported as one line naming both versions and the fix, exit code 2.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import platform
import sys

from slmscale import __version__
from slmscale.errors import EXIT_USER_ERROR
from slmscale.install_check import torchaudio_problem
from slmscale.paths import output_root
from slmscale.tracking import default_tracking_uri


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def run(args) -> int:
    import torch

    gpu = torch.cuda.is_available()
    gpu_desc = (
        f"yes: {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}" if gpu else "no"
    )
    problem = torchaudio_problem()
    rows = [
        ("slmscale", __version__),
        ("python", platform.python_version()),
        ("torch", _version("torch")),
        ("torchaudio", _version("torchaudio")),
        ("torchaudio check", "ok" if problem is None else "BROKEN (see below)"),
        ("ray", _version("ray")),
        ("mlflow", _version("mlflow")),
        ("transformers", _version("transformers")),
        ("gpu visible", gpu_desc),
        ("tracking uri (default)", default_tracking_uri(output_root())),
        ("output root", str(output_root())),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")
    if problem is not None:
        print(f"slmscale info: error: {problem}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0
