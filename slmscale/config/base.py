"""Shared machinery for every spec: strict models, YAML loading, one-line error messages.

Every YAML the user writes is parsed here and nowhere else.  Errors come out as
`FILE: FIELD.PATH: PROBLEM`, e.g. `tune_spaces/x.yaml: models[2]: unknown size '30M' (known: ...)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from slmscale.errors import UserError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a spec must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def format_loc(loc: tuple[Any, ...]) -> str:
    """('models', 2, 'dim') -> 'models[2].dim'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before", "function-wrap") or str(part).startswith(
            ("function-", "union[", "tagged-union[")
        ):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _describe(err: dict) -> str:
    msg = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if err["type"] == "extra_forbidden":
        return "unknown key (check the spelling; unknown keys are not allowed)"
    if err["type"] == "missing":
        return "required field is missing"
    return msg


def validation_message(source: str, exc: ValidationError) -> str:
    """One line naming the file, the first bad field and what is wrong with it."""
    errors = exc.errors()
    first = errors[0]
    line = f"{source}: {format_loc(tuple(first['loc']))}: {_describe(first)}"
    if len(errors) > 1:
        line += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return line


def read_yaml(path: str | Path) -> dict:
    """Parse a YAML mapping; any problem is a UserError naming the file (and line)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise UserError(f"{where}: invalid YAML: {exc.problem}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(
            f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}"
        )
    return data


def parse_model(model: type[M], data: dict, source: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UserError(validation_message(source, exc)) from None


def load_yaml_model(model: type[M], path: str | Path) -> M:
    """Read `path` and validate it as `model`; a UserError on any problem."""
    return parse_model(model, read_yaml(path), str(path))
