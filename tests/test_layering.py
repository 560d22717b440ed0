"""The science stays pure: importing the core never imports Ray or MLflow (DESIGN.md layering).

This is also what lets the GPU benchmarks run on a machine that has neither installed.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PURE_CORE = [
    "slmscale.model",
    "slmscale.units",
    "slmscale.paper",
    "slmscale.config",
    "slmscale.trial",
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


PACKAGE = Path(__file__).resolve().parents[1] / "slmscale"
# The science and its data: they are called by the platform, never the other way round.
CORE = ["train", "laws", "evaluate", "audio", "trial.py", "model.py", "corpus.py", "units.py"]
UPPER = ("slmscale.grid", "slmscale.commands", "slmscale.bench", "slmscale.demo", "slmscale.cli")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, at any depth (function-level ones too)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def test_no_import_runs_back_up_from_the_core():
    """train/, laws/, evaluate/, audio/ (and the trial, model, corpus, units modules) import
    nothing from grid/, commands/, bench/, demo/ or the CLI, not even inside a function."""
    files = []
    for part in CORE:
        where = PACKAGE / part
        files += sorted(where.rglob("*.py")) if where.is_dir() else [where]
    assert len(files) > 40  # the walk found the core
    upward = [
        f"{f.relative_to(PACKAGE.parent)}:{line} imports {module}"
        for f in files
        for line, module in _imports(f)
        if module.startswith(UPPER)
    ]
    assert upward == []
