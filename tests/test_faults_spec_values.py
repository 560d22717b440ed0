"""Spec values checked to the last one (issue 21): NaN, inf, zero and sub-token budgets, infinite
epochs and epochs that leave no unique token are refused with one line naming the item, and
`slmscale grid --dry-run` exits 2 on them instead of a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmscale.cli import main

SPEC = """name: t
units:
  - {path: units/x, available_tokens: 1.0e+9}
models: [{name: tiny, layers: 1, dim: 32, heads: 2}]
"""


def spec_file(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "spec.yaml"
    p.write_text(SPEC + body)
    return p


@pytest.mark.parametrize(
    "body,field,problem",
    [
        ("tokens: [.nan]\n", "tokens[0]", "finite"),
        ("tokens: [1000, .inf]\n", "tokens[1]", "finite"),
        ("tokens: [-.inf]\n", "tokens[0]", "finite"),
        ("tokens: [0]\n", "tokens[0]", "greater than 0"),
        ("tokens: [1000, -5]\n", "tokens[1]", "greater than 0"),
        ("tokens: [0.4]\n", "tokens[0]", "rounds to 0"),
        ("d_over_n: [.nan]\n", "d_over_n[0]", "finite"),
        ("d_over_n: [1.0e-9]\n", "d_over_n[0]", "budget of 0 tokens"),
        ("tokens: [1000]\nepochs: [.nan]\n", "epochs[0]", "finite"),
        ("tokens: [1000]\nepochs: [1, .inf]\n", "epochs[1]", "finite"),
        ("tokens: [1000]\nepochs: [0.5]\n", "epochs[0]", ">= 1"),
        ("tokens: [1000]\nepochs: [1.0e+6]\n", "epochs[0]", "0 unique tokens"),
        ("tokens: [1000]\nepochs: [many]\n", "epochs[0]", "'auto'"),
        (
            "tokens: [1000]\nextra:\n  - models: [{name: tiny, layers: 1, dim: 32, heads: 2}]\n"
            "    tokens: [.inf]\n",
            "extra[0].tokens[0]",
            "finite",
        ),
        ("tokens: [1000]\noptimizer: {lr_max: .inf}\n", "optimizer.lr_max", "finite"),
        ("tokens: [1000]\navailable_tokens: .nan\n", "available_tokens", "finite"),
    ],
)
def test_bad_value_is_one_line_naming_the_item(tmp_path, capsys, body, field, problem):
    path = spec_file(tmp_path, body)
    assert main(["grid", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"{path}: {field}: " in err, err
    assert problem in err, err
    assert "(top level)" not in err


def test_good_values_still_plan(tmp_path, capsys):
    path = spec_file(tmp_path, "tokens: [2, 1000.4]\nepochs: [1, 2, auto]\n")
    assert main(["grid", str(path), "--dry-run"]) == 0
    assert "grid t: 4 trials" in capsys.readouterr().out  # `auto` gives the same trials as 1
