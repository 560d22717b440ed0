"""Every flag of every command says what it does (`slmscale COMMAND --help`)."""

from __future__ import annotations

import argparse

from slmscale import cli


def test_every_flag_has_help():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, sub_parser in sub.choices.items()
        for action in sub_parser._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert not missing, "flags without help: " + ", ".join(missing)


def test_json_means_a_file_wherever_it_appears():
    """`--json FILE` writes a JSON copy; choosing the printed format is `--format`."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub_parser in sub.choices.items():
        for action in sub_parser._actions:
            if "--json" in action.option_strings:
                assert action.nargs is None and action.const is None, f"{name} --json is a switch"
                assert action.metavar == "FILE", f"{name} --json should read --json FILE"
