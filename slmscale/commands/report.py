"""`slmscale report`: fit (as `slmscale fit`) and write the report directory.

    reports/NAME/fit.json, fig*.png + fig*.svg, report.md, report.html (self-contained)

With `--experiment` the directory is also logged to MLflow as a fit run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from slmscale.commands.fit import add_input_arguments, fit_json_bytes, study_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="e.g. reports/NAME")
    parser.add_argument("--title", default=None, help="report title (default: the source)")


def write_report(study, out: Path, title: str) -> list[str]:
    """Write fit.json, figures, report.md and report.html into `out`; returns figure names."""
    from slmscale.report.document import build_blocks, to_html, to_markdown
    from slmscale.report.figures import save_all
    from slmscale.units import write_bytes_atomic

    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / "fit.json", fit_json_bytes(study.doc))
    figures = save_all(study, out)
    blocks = build_blocks(study, figures, title)
    write_bytes_atomic(out / "report.md", to_markdown(blocks).encode())
    write_bytes_atomic(out / "report.html", to_html(blocks, out, title).encode())
    return figures


def run(args) -> int:
    study = study_from_args(args)
    out = Path(args.out)
    title = args.title or f"Scaling report: {study.doc['source'].get('label')}"
    figures = write_report(study, out, title)
    print(
        f"wrote {out}/report.md, report.html, fit.json and {len(figures)} figures", file=sys.stderr
    )
    if args.experiment:
        from slmscale.tracking.fits import log_fit_run

        run_id = log_fit_run(
            args.tracking_uri, args.experiment, args.filter, study.doc, artifacts_dir=out
        )
        print(f"logged fit run {run_id}", file=sys.stderr)
    return 0
