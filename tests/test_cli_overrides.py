"""`key=value` overrides of a spec on grid/train/--dry-run, and a closed pipe that is not a crash."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from slmscale import cli
from slmscale.config.base import apply_overrides
from slmscale.errors import UserError
from slmscale.grid.plan import load_plan

ROOT = Path(__file__).resolve().parents[1]
PAPER = str(ROOT / "tune_spaces" / "paper.yaml")


def test_overrides_change_the_plan_like_an_edited_file(tmp_path):
    import yaml

    base = load_plan(PAPER)
    over = load_plan(PAPER, ["models=[20M, 85M]", "optimizer.lr_max=1e-3", "extra=[]"])
    assert {t.model_size for t in over.trials} == {"20M", "85M"}
    assert over.spec.optimizer.lr_max == 1e-3
    assert len(over.trials) < len(base.trials)

    # The same change made in a copy of the file gives the same trials, keys included.
    data = yaml.safe_load(Path(PAPER).read_text())
    data.update(models=["20M", "85M"], extra=[])
    data.setdefault("optimizer", {})["lr_max"] = 1e-3
    edited = tmp_path / "paper.yaml"
    edited.write_text(yaml.safe_dump(data))
    assert [t.key for t in load_plan(str(edited)).trials] == [t.key for t in over.trials]


def test_override_paths_reach_nested_keys_and_list_items_without_touching_the_input():
    data = {"models": ["20M", "85M"], "train": {"compile": False}}
    out = apply_overrides(data, ["models[1]=309M", "train.compile=true", "new.key=[1, 2]"], "s")
    assert out == {"models": ["20M", "309M"], "train": {"compile": True}, "new": {"key": [1, 2]}}
    assert data == {"models": ["20M", "85M"], "train": {"compile": False}}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("nonsense", "expected KEY.PATH=VALUE"),
        ("models[9]=20M", "models[9]: no such item (list: 5)"),
        ("optimizer.lr=1e-3", "optimizer.lr: unknown key"),
        ("models=[30M]", "models[0]: unknown size '30M'"),
        ("optimizer.lr_max=-1", "optimizer.lr_max: "),
        ("models[0].dim=3", "models[0] is not a mapping (no key 'dim')"),
    ],
)
def test_a_bad_override_is_one_line_naming_the_file_and_the_field(override, message, capsys):
    assert cli.main(["grid", PAPER, override, "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"slmscale grid: error: {PAPER}")
    assert message in err[0]


def test_overrides_reach_the_dry_run_json(capsys):
    assert (
        cli.main(["grid", PAPER, "models=[20M]", "extra=[]", "--dry-run", "--format", "json"]) == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert rows and {r["model_size"] for r in rows} == {"20M"}


def test_apply_overrides_rejects_bad_yaml_values():
    with pytest.raises(UserError, match="not valid YAML"):
        apply_overrides({}, ["a=[1, 2"], "spec.yaml")


def test_a_reader_that_goes_away_is_not_a_traceback():
    """`slmscale grid SPEC --dry-run | head -1`: our end closes before the table is written."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "slmscale.cli", "grid", PAPER, "--dry-run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    proc.stdout.close()  # before the child has imported anything, so its first write fails
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 141, err.decode()
    assert b"Traceback" not in err and b"BrokenPipe" not in err
