"""Shared machinery for every spec: strict models, YAML loading, one-line error messages.

Every YAML the user writes is parsed here and nowhere else.  Errors come out as
`FILE: FIELD.PATH: PROBLEM`, e.g. `tune_spaces/x.yaml: models[2]: unknown size '30M' (known: ...)`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
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


_OVERRIDE = re.compile(
    r"^(?P<path>[A-Za-z_][\w]*(?:\[\d+\]|\.[A-Za-z_][\w]*)*)=(?P<value>.*)$", re.S
)
_PART = re.compile(r"\.?([A-Za-z_]\w*)|\[(\d+)\]")


def apply_overrides(data: dict, overrides: Sequence[str], source: str) -> dict:
    """A copy of `data` with `key.path=value` overrides applied (Hydra-style, without Hydra).

    A path is dotted keys and list indices (`train.lr=3e-4`, `models[0]=85M`,
    `resources.workers=2`); the value is read as YAML, so `tokens=[1e6,2e6]`, `compile=true` and
    `description='a b'` mean what they would in the file.  New keys may be added (the model then
    says if they are unknown), but a path never walks through a scalar or past a list's end.  The
    result is validated exactly like the file, so a bad override gets the same one-line error.
    """
    out = copy.deepcopy(data)
    for text in overrides:
        m = _OVERRIDE.match(text)
        if m is None:
            raise UserError(
                f"{source}: override {text!r}: expected KEY.PATH=VALUE (e.g. train.lr=3e-4)"
            )
        try:
            value = yaml.safe_load(m["value"]) if m["value"].strip() else None
        except yaml.YAMLError as exc:
            raise UserError(
                f"{source}: override {text!r}: value is not valid YAML ({exc})"
            ) from None
        parts = [(k, int(i)) if i else (k, None) for k, i in _PART.findall(m["path"])]
        node: Any = out
        for depth, (key, index) in enumerate(parts):
            last = depth == len(parts) - 1
            where = _path_text(parts[: depth + 1])
            if key:
                if not isinstance(node, dict):
                    parent = _path_text(parts[:depth])
                    raise UserError(
                        f"{source}: override {text!r}: {parent} is not a mapping (no key {key!r})"
                    )
                if last:
                    node[key] = value
                else:
                    node = node.setdefault(key, {})
            else:
                if not isinstance(node, list) or index >= len(node):
                    size = len(node) if isinstance(node, list) else "not a list"
                    raise UserError(
                        f"{source}: override {text!r}: {where}: no such item (list: {size})"
                    )
                if last:
                    node[index] = value
                else:
                    node = node[index]
    return out


def _path_text(parts: list[tuple[str, int | None]]) -> str:
    text = ""
    for key, index in parts:
        text += f".{key}" if key else f"[{index}]"
    return text.lstrip(".")


def overrides_source(path: str | Path, overrides: Sequence[str]) -> str:
    """How errors name a spec read with overrides: the file, then what was changed."""
    return f"{path} (with {' '.join(overrides)})" if overrides else str(path)


def parse_model(model: type[M], data: dict, source: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UserError(validation_message(source, exc)) from None


def load_yaml_model(model: type[M], path: str | Path, overrides: Sequence[str] = ()) -> M:
    """Read `path`, apply `key=value` overrides, validate as `model`; a UserError on any problem."""
    data = apply_overrides(read_yaml(path), overrides, str(path)) if overrides else read_yaml(path)
    return parse_model(model, data, overrides_source(path, overrides))
