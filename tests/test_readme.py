"""README says what the code does: its generated sections are current, its command table whole."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from slmscale import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _sections_module():
    spec = importlib.util.spec_from_file_location(
        "readme_sections", ROOT / "scripts" / "readme_sections.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_sections_match_what_the_code_prints_now():
    sections = _sections_module()
    names = re.findall(r"<!-- generated: ([\w-]+) ", README)
    assert sorted(names) == sorted(sections.SECTIONS), "README and the script name other sections"
    _new, stale = sections.render(README)
    assert not stale, (
        f"README.md sections {stale} no longer match the code: run "
        "`python scripts/readme_sections.py --write` and commit README.md"
    )


def test_the_command_table_lists_every_command():
    table = [line for line in README.splitlines() if line.startswith("| `slmscale ")]
    listed = [re.match(r"\| `slmscale (\w+)", line)[1] for line in table]
    assert listed == list(cli.COMMANDS) or sorted(listed) == sorted(cli.COMMANDS), listed
