"""The Ray edge speaks only public Ray: every Ray name slmscale spells is public and exists.

Found statically in slmscale/ (imports and `ray.x.y` chains), then resolved against the installed
Ray.  A private name (a component starting with `_`: `ray._private`, `ray.train._internal`) fails
here, and so does a public one the installed Ray no longer has.  `scripts/check_newest_ray.sh`
runs this test (and the Ray grid test) against the newest Ray the package index serves, so an
upgrade's breakage is known before it is taken.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "slmscale"


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == "ray":
        return ".".join(["ray", *reversed(parts)])
    return None


def ray_names() -> dict[str, str]:
    """Every Ray name used in slmscale/ -> where (file:line)."""
    names: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ray":
                for alias in node.names:
                    names.setdefault(f"{node.module}.{alias.name}", where)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "ray":
                        names.setdefault(alias.name, where)
            elif isinstance(node, ast.Attribute):
                dotted = _dotted(node)
                if dotted:
                    names.setdefault(dotted, where)
    return names


def _resolve(name: str):
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(name)


def test_every_ray_name_is_public_and_exists():
    names = ray_names()
    assert "ray.train.UserCallback" in names and "ray.util.queue.Queue" in names  # the scan works
    private = [
        f"{where}: {n}"
        for n, where in names.items()
        if any(p.startswith("_") for p in n.split("."))
    ]
    assert private == [], "private Ray APIs in use"
    missing = []
    for name, where in names.items():
        try:
            _resolve(name)
        except (ImportError, AttributeError) as exc:
            missing.append(f"{where}: {name} ({type(exc).__name__})")
    assert missing == [], "Ray names the installed Ray does not have"
