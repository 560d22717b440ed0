"""Every grid-spec error path gives one line naming the file, the field path and the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from slmscale.config import load_grid_spec
from slmscale.errors import UserError

VALID = {
    "name": "t",
    "units": [{"path": "units/x", "available_tokens": 1e9}],
    "models": ["20M", "85M"],
    "d_over_n": [2, 4],
}


def write(tmp_path: Path, data, name="spec.yaml") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return p


def error_of(tmp_path, data) -> str:
    path = write(tmp_path, data)
    with pytest.raises(UserError) as exc:
        load_grid_spec(path)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: ")
    return msg[len(f"{path}: ") :]


def with_(**changes):
    d = dict(VALID)
    d.update(changes)
    return {k: v for k, v in d.items() if v is not None}


def test_valid_spec_loads_with_paper_defaults(tmp_path):
    spec = load_grid_spec(write(tmp_path, VALID))
    assert spec.context == 2050
    assert spec.optimizer.lr_max == 5e-4 and spec.optimizer.lr_min == 5e-5
    assert spec.optimizer.weight_decay == 0.1
    assert (spec.optimizer.warmup_min_steps, spec.optimizer.warmup_fraction) == (100, 0.01)
    assert [m.name for m in spec.models] == ["20M", "85M"]


@pytest.mark.parametrize(
    "changes,expected",
    [
        (
            {"models": ["20M", "85M", "30M"]},
            "models[2]: unknown size '30M' (known: 20M, 85M, 155M, 309M, 823M)",
        ),
        ({"modles": ["20M"]}, "modles: unknown key"),
        ({"models": None}, "models: required field is missing"),
        ({"models": []}, "models: List should have at least 1 item"),
        (
            {"models": [{"name": "x", "layers": 2, "dim": 64}]},
            "models[0]: size 'x': give all of layers, dim and heads",
        ),
        (
            {"models": [{"name": "x", "layers": 2, "dim": 63, "heads": 2}]},
            "models[0]: size 'x': dim 63 is not divisible by heads 2",
        ),
        (
            {"models": [{"name": "x", "layers": 0, "dim": 64, "heads": 2}]},
            "models[0].layers: Input should be greater than 0",
        ),
        (
            {"models": [{"name": "x", "layers": 1, "dim": 64, "heads": 2, "colour": 1}]},
            "models[0].colour: unknown key",
        ),
        ({"tokens": [1e6]}, "give exactly one of d_over_n and tokens"),
        ({"d_over_n": None}, "give exactly one of d_over_n and tokens"),
        ({"d_over_n": [2, -1]}, "d_over_n[1]: Input should be greater than 0"),
        ({"d_over_n": "many"}, "d_over_n: Input should be a valid list"),
        ({"epochs": [0.5]}, "epochs[0]: epochs must be >= 1 or 'auto', got 0.5"),
        ({"epochs": ["sometimes"]}, "epochs[0]"),
        (
            {"optimizer": {"lr_max": 1e-4, "lr_min": 1e-3}},
            "optimizer.lr_min is larger than optimizer.lr_max",
        ),
        ({"optimizer": {"lr": 1e-4}}, "optimizer.lr: unknown key"),
        (
            {"optimizer": {"weight_decay": -1}},
            "optimizer.weight_decay: Input should be greater than or equal to 0",
        ),
        ({"batch_size": {"823M": 8}}, "batch_size names sizes not in the grid: 823M"),
        ({"batch_size": 0}, "batch_size must be positive"),
        ({"units": []}, "units: List should have at least 1 item"),
        (
            {"units": [{"path": "a", "weight": 0}]},
            "units[0].weight: Input should be greater than 0",
        ),
        (
            {"benchmarks": [{"name": "blimp", "units": "u", "root": "r"}]},
            "benchmarks[0].name: Input should be",
        ),
        ({"name": "has space"}, "name: String should match pattern"),
        ({"context": 1}, "context: Input should be greater than 1"),
        (
            {"extra": [{"models": ["20M"], "d_over_n": [2], "epochs": [2], "color": 1}]},
            "extra[0].color: unknown key",
        ),
        (
            {"resources": {"gpus_per_worker": -1}},
            "resources.gpus_per_worker: Input should be greater than or equal to 0",
        ),
        (
            {"throughput": {"mfu": 1.5, "peak_flops": 1e15}},
            "throughput.mfu: Input should be less than or equal to 1",
        ),
    ],
)
def test_bad_specs_name_field_and_problem(tmp_path, changes, expected):
    data = with_(**{k: v for k, v in changes.items()})
    for k, v in changes.items():
        if v is None:
            data.pop(k, None)
    assert expected in error_of(tmp_path, data)


def test_several_problems_are_counted_not_dumped(tmp_path):
    msg = error_of(tmp_path, with_(models=["1M", "2M"], context=0))
    assert "(and 2 more problems)" in msg


def test_same_name_two_shapes_is_refused(tmp_path):
    data = with_(
        extra=[{"models": [{"name": "20M", "layers": 1, "dim": 32, "heads": 2}], "d_over_n": [2]}]
    )
    assert "size name '20M' is used for two different shapes" in error_of(tmp_path, data)


def test_yaml_syntax_error_names_line(tmp_path):
    path = write(tmp_path, "name: t\nmodels: [20M,\n  d_over_n: 2\n")
    with pytest.raises(UserError, match=rf"^{path}:\d+:\d+: invalid YAML"):
        load_grid_spec(path)


def test_not_a_mapping_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="expected a mapping"):
        load_grid_spec(write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(UserError, match="no such file"):
        load_grid_spec(tmp_path / "nope.yaml")


def test_cli_exits_2_with_one_line_and_no_traceback(tmp_path):
    path = write(tmp_path, with_(models=["20M", "85M", "30M"]))
    proc = subprocess.run(
        [sys.executable, "-m", "slmscale.cli", "grid", str(path), "--dry-run"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0] == (
        f"slmscale grid: error: {path}: models[2]: unknown size '30M' "
        "(known: 20M, 85M, 155M, 309M, 823M)"
    )
