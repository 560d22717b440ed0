"""The installation itself: runs first (file name) so a broken install is CI's first failure.

An upstream torchaudio patch release once broke every fresh install (2.11.1 does not load against
torch 2.11.0).  These tests pin the remedy: an exact torch/torchaudio pair, a lock file that the
README and CI install through, and a one-line check that names the mismatch.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from slmscale import cli, install_check

ROOT = Path(__file__).resolve().parents[1]


def _lock() -> dict[str, list[tuple[Version, str]]]:
    """constraints.txt as name -> [(version, environment marker)] (one per marker branch)."""
    pins: dict[str, list[tuple[Version, str]]] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"constraints.txt: {line!r} is not an exact pin"
        pins.setdefault(_norm(req.name), []).append((Version(spec.version), str(req.marker or "")))
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dependencies() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        deps += extra
    return [Requirement(d) for d in deps]


def test_torchaudio_loads_against_the_installed_torch():
    problem = install_check.torchaudio_problem()
    assert problem is None, problem


def test_torch_and_torchaudio_are_pinned_to_one_exact_pair_everywhere():
    import importlib.metadata as md

    deps = {_norm(r.name): r for r in _dependencies()}
    lock = _lock()
    for name in ("torch", "torchaudio"):
        (spec,) = deps[name].specifier
        assert spec.operator == "==" and "*" not in spec.version, f"pyproject: {deps[name]}"
        assert [v for v, _ in lock[name]] == [Version(spec.version)], name
        assert Version(md.version(name)) == Version(spec.version), f"installed {name}"
    torch_v = Version(md.version("torch"))
    audio_v = Version(md.version("torchaudio"))
    assert (torch_v.major, torch_v.minor) == (audio_v.major, audio_v.minor)


def test_every_dependency_is_locked_and_the_lock_satisfies_pyproject():
    lock = _lock()
    for req in _dependencies():
        name = _norm(req.name)
        assert name in lock, f"{req.name} is in pyproject.toml but not in constraints.txt"
        for version, _marker in lock[name]:
            assert req.specifier.contains(version, prereleases=True), (
                f"constraints.txt pins {req.name}=={version}, outside pyproject's {req.specifier}"
            )


def test_installed_packages_match_the_lock_where_it_applies():
    """A stale venv (or a lock nobody reinstalled from) shows here, not as a strange failure."""
    import importlib.metadata as md

    from packaging.markers import Marker

    mismatched = []
    for name, pins in _lock().items():
        applicable = [v for v, m in pins if not m or Marker(m).evaluate()]
        if not applicable:
            continue
        try:
            installed = Version(md.version(name))
        except md.PackageNotFoundError:
            continue  # a platform-only package (e.g. for Windows) or an unused extra
        if installed not in applicable:
            mismatched.append(f"{name} {installed} (lock: {applicable[0]})")
    assert not mismatched, "installed != constraints.txt: " + ", ".join(mismatched)


def test_readme_and_ci_install_through_the_lock():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    installs = re.findall(r"pip install [^\n`&]*-e[^\n`&]*", readme)
    assert installs, "README has no pip install -e command"
    for cmd in installs:
        assert "-c constraints.txt" in cmd, f"README installs without the lock: {cmd}"
    assert "-c constraints.txt -e '.[test]'" in ci
    assert "python -m pytest -q" in ci and "python -m pytest -q" in readme


def _break_torchaudio(monkeypatch):
    """Make the native check fail the way torchaudio 2.11.1 did against torch 2.11.0."""

    def broken():
        try:
            raise OSError(
                "/venv/torchaudio/lib/libtorchaudio.so: undefined symbol: "
                "torch_exception_get_what_without_backtrace"
            )
        except OSError as inner:
            raise OSError(
                "Could not load this library: /venv/torchaudio/lib/libtorchaudio.so"
            ) from inner

    monkeypatch.setattr(install_check, "exercise_torchaudio", broken)


def test_a_broken_pair_is_one_line_naming_both_versions_the_symbol_and_the_fix(monkeypatch):
    import importlib.metadata as md

    _break_torchaudio(monkeypatch)
    problem = install_check.torchaudio_problem()
    assert problem is not None and "\n" not in problem
    assert f"torchaudio {md.version('torchaudio')}" in problem
    assert f"torch {md.version('torch')}" in problem
    assert "undefined symbol: torch_exception_get_what_without_backtrace" in problem
    assert "constraints.txt" in problem


def test_info_reports_the_check_and_exits_2_when_broken(monkeypatch, capsys):
    assert cli.main(["info"]) == 0
    assert re.search(r"^torchaudio check\s+ok$", capsys.readouterr().out, re.M)

    _break_torchaudio(monkeypatch)
    assert cli.main(["info"]) == 2
    out = capsys.readouterr()
    assert "torchaudio check" in out.out and "BROKEN" in out.out
    errors = out.err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("slmscale info: error: torchaudio ")


@pytest.mark.parametrize(
    "argv",
    [
        # Paths that exist (the cheap checks pass), so what refuses is the torchaudio check.
        ["tokenize", "--input", f"x={ROOT}", "--out", "OUT", "--kmeans", str(ROOT / "README.md")],
        ["kmeans", "--input", f"x={ROOT}", "--out", "OUT"],
        ["demo", "--workdir", "OUT", "--quick"],
    ],
    ids=lambda argv: argv[0],
)
def test_audio_commands_refuse_to_start_on_a_broken_pair(monkeypatch, capsys, tmp_path, argv):
    _break_torchaudio(monkeypatch)
    argv = [str(tmp_path / a) if a == "OUT" else a for a in argv]
    ran = []
    monkeypatch.setattr(cli._load(argv[0]), "run", lambda args: ran.append(args) or 0)
    assert cli.main(argv) == 2
    assert not ran  # refused before the stage started
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "undefined symbol" in err[0]
    assert not any(tmp_path.iterdir())  # nothing written
