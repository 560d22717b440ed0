"""`slmscale`: one subcommand per stage.  Each lives in `slmscale/commands/<name>.py` with
`add_arguments(parser)`, `run(args) -> int` and optionally `precheck(args)` (cheap checks run
before anything heavy is imported); a command's module is imported only when that command runs.

A `UserError` anywhere becomes one line on stderr and exit code 2; other exceptions are our bugs
and keep their traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Iterable

from slmscale import __version__
from slmscale.errors import EXIT_USER_ERROR, UserError

COMMANDS: dict[str, str] = {
    "tokenize": "audio -> HuBERT/log-mel k-means units (Ray Data), with rejects and Table 2",
    "kmeans": "train k-means centroids on encoder features",
    "unigram": "SentencePiece unigram compression of a units dataset",
    "grid": "train every trial of a grid spec (Ray Tune over Ray Train, tracked in MLflow)",
    "train": "train one trial of a grid spec, without Tune (debugging)",
    "eval": "score a trained model on sBLIMP / sWUGGY / StoryCloze / TopicCloze",
    "fit": "fit the scaling laws to tracked runs or a runs table",
    "report": "fit and write the report (figures, tables, paper values beside ours)",
    "plan": "answer compute-budget questions from a fit",
    "design": "before training: will a grid spec identify the law? (simulated studies, next runs)",
    "demo": "the whole pipeline on a synthetic speech world, on a laptop CPU",
    "status": "where a grid stands (done, running, failed, interrupted, left), from the store",
    "bench": "performance figures, side by side with their baselines",
    "info": "versions, GPU visibility, default tracking URI and output root",
}


#: Commands that decode or featurise audio: they check torchaudio's native library before starting,
#: so a broken torch/torchaudio pair is one line here, not a traceback inside a Ray actor.
NEEDS_TORCHAUDIO = frozenset({"tokenize", "kmeans", "demo"})


def _load(name: str):
    return importlib.import_module(f"slmscale.commands.{name}")


def build_parser(load: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The whole CLI; `load`: the commands whose modules are imported for their flags (default:
    all).  `main` loads only the command it runs: a command's module may import much (the grid
    planner, pandas), and a wrong name or a missing file should be answered before any of it."""
    parser = argparse.ArgumentParser(
        prog="slmscale",
        description="Scaling studies of speech language models: units, grid, evaluation, laws, report.",
    )
    parser.add_argument("--version", action="version", version=f"slmscale {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show Ray, Tune and MLflow log output (hidden by default; see slmscale/console.py)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = set(COMMANDS if load is None else load)
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        module = _load(name) if name in wanted else None
        if module is not None:
            module.add_arguments(p)
        p.set_defaults(_module=module, _name=name)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The subcommand an argument list runs (the first word that is not a flag), if any."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_of(argv)
    parser = build_parser(load=[command] if command else [])
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USER_ERROR
    if not args.verbose:
        from slmscale.console import quiet_platform_logs

        quiet_platform_logs()
    try:
        precheck = getattr(args._module, "precheck", None)
        if precheck is not None:  # cheap input checks first (a missing file, a wrong name: < 1 s)
            precheck(args)
        if args._name in NEEDS_TORCHAUDIO:
            from slmscale.install_check import require_torchaudio

            require_torchaudio()
        return int(args._module.run(args) or 0)
    except UserError as exc:
        print(f"slmscale {args._name}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"slmscale {args._name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _closed_pipe()


def _closed_pipe() -> int:
    """The reader went away (`slmscale grid SPEC --dry-run | head`): stop quietly, like `cat`.

    Point stdout at /dev/null so the interpreter's final flush cannot raise a second time, and exit
    with the status a process killed by SIGPIPE has (128 + 13).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


if __name__ == "__main__":
    sys.exit(main())
