"""The CLI: one subcommand per stage, info, and the exit-code contract."""

from __future__ import annotations

import subprocess
import sys

import pytest

from slmscale import cli
from slmscale.errors import UserError

STAGES = [
    "tokenize",
    "kmeans",
    "unigram",
    "grid",
    "train",
    "eval",
    "fit",
    "report",
    "plan",
    "design",
    "demo",
    "status",
    "bench",
    "info",
]


def run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "slmscale.cli", *args], capture_output=True, text=True, env=env
    )


def test_help_lists_every_stage():
    out = run_cli("--help").stdout
    for name in STAGES:
        assert f"    {name}" in out, name
    assert list(cli.COMMANDS) == STAGES


def test_user_error_is_one_line_exit_2(monkeypatch, capsys):
    class Boom:
        @staticmethod
        def add_arguments(p):
            pass

        @staticmethod
        def run(args):
            raise UserError("spec.yaml: models[0]: bad\nsecond line")

    monkeypatch.setattr(cli, "_load", lambda name: Boom)
    assert cli.main(["fit"]) == 2
    assert capsys.readouterr().err == "slmscale fit: error: spec.yaml: models[0]: bad second line\n"


def test_our_bugs_keep_their_traceback(monkeypatch):
    class Bug:
        @staticmethod
        def add_arguments(p):
            pass

        @staticmethod
        def run(args):
            raise ZeroDivisionError

    monkeypatch.setattr(cli, "_load", lambda name: Bug)
    with pytest.raises(ZeroDivisionError):
        cli.main(["fit"])


def test_no_command_prints_help_exit_2(capsys):
    assert cli.main([]) == 2


def test_info_reports_versions_gpu_and_defaults(tmp_path):
    import os

    env = dict(os.environ, SLMSCALE_HOME=str(tmp_path))
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = run_cli("info", env=env)
    assert proc.returncode == 0, proc.stderr
    fields = dict(
        line.split(None, 1) if "  " not in line else [p.strip() for p in line.split("  ", 1)]
        for line in proc.stdout.strip().splitlines()
    )
    for key in (
        "torch",
        "torchaudio",
        "ray",
        "mlflow",
        "transformers",
        "gpu visible",
        "output root",
    ):
        assert key in fields, proc.stdout
    assert fields["torch"].startswith("2.11")
    assert fields["tracking uri (default)"] == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert fields["output root"] == str(tmp_path.resolve())
