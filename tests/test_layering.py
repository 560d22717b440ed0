"""The science stays pure: importing the core never imports Ray or MLflow (DESIGN.md layering).

This is also what lets the GPU benchmarks run on a machine that has neither installed.
"""

from __future__ import annotations

import subprocess
import sys

PURE_CORE = [
    "slmscale.model",
    "slmscale.units",
    "slmscale.paper",
    "slmscale.config",
    "slmscale.grid.expand",
    "slmscale.corpus",
    "slmscale.train",
    "slmscale.train.loop",
    "slmscale.audio.encoders",
    "slmscale.audio.unit_encoder",
    "slmscale.audio.kmeans",
    "slmscale.audio.unigram",
    "slmscale.evaluate",
    "slmscale.laws",
    "slmscale.demo.world",
    "slmscale.bench.results",
]


def test_pure_core_imports_neither_ray_nor_mlflow():
    code = (
        "import sys, importlib\n"
        f"for m in {PURE_CORE!r}: importlib.import_module(m)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'mlflow'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_cli_help_is_light():
    """`slmscale --help` must not pay for Ray, MLflow or torch."""
    code = (
        "import sys\nfrom slmscale import cli\ncli.build_parser()\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'mlflow', 'torch'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
