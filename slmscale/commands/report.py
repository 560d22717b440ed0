"""`slmscale report`: fit (as `slmscale fit`) and write the report directory.

    reports/NAME/fit.json, fig*.png + fig*.svg, report.md, report.html (self-contained)

`--compare EXP...` sets other experiments against the main one (the paper's ablations): an
experiment with the main tokenizer on another corpus gives Figure 3 (data ablation), one with
another tokenizer Figure 5 (tokenizer ablation, Eq. 4 fitted on each).  Each compared
experiment is fitted as `slmscale fit` would (its fit.json beside the main one, as
fit-EXP.json), and comparison.json holds what Figures 3 and 5 show.
With `--experiment` the directory is also logged to MLflow as a fit run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from slmscale.commands.fit import add_input_arguments, fit_json_bytes, study_from_args
from slmscale.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="e.g. reports/NAME")
    parser.add_argument("--title", default=None, help="report title (default: the source)")
    parser.add_argument(
        "--compare",
        nargs="+",
        metavar="EXP",
        help="experiments set against --experiment: same tokenizer on another corpus -> "
        "Figure 3 (data ablation); another tokenizer -> Figure 5 (tokenizer ablation)",
    )
    parser.add_argument(
        "--compare-schedule",
        metavar="EXP",
        help="the same grid trained under the other LR schedule (e.g. wsd vs cosine) in "
        "experiment EXP: per-point losses against the seed noise, both studies' Eq. 4 "
        "constants, the compute each spent (schedules.json, fig_schedules)",
    )


def comparison_doc(arms, rows) -> dict:
    """What Figures 3 and 5 show, as data (comparison.json)."""
    from slmscale.laws.study import rounded
    from slmscale.report.arms import data_ablation_claims, data_arms, tokenizer_arms

    def arm_doc(a):
        fit = {k: v for k, v in (a.fit or {}).items() if k != "downstream"}
        return {
            "label": a.label,
            "experiment": a.experiment,
            "tokenizer": a.tokenizer,
            "main": a.main,
            "n_runs": len(a.table),
            "fit": fit or None,
            "reason": a.reason,
        }

    d_arms = data_arms(arms)
    return rounded(
        {
            "arms": [arm_doc(a) for a in arms],
            "data_ablation": {
                "arms": [a.label for a in d_arms],
                "rows": rows,
                "claims": data_ablation_claims(d_arms, rows),
            },
            "tokenizer_ablation": {"arms": [a.label for a in tokenizer_arms(arms)]},
        }
    )


def write_report(
    study,
    out: Path,
    title: str,
    arms=None,
    compared: dict | None = None,
    schedules: dict | None = None,
) -> list[str]:
    """Write fit.json, figures, report.md and report.html into `out`; returns figure names."""
    from slmscale.report import style
    from slmscale.report.ablation_figures import fig3_data_ablation, fig5_tokenizer_envelopes
    from slmscale.report.arms import arms_of_study, data_ablation_rows, data_arms, tokenizer_arms
    from slmscale.report.document import build_blocks, to_html, to_markdown
    from slmscale.report.figures import save_all
    from slmscale.units import write_bytes_atomic

    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / "fit.json", fit_json_bytes(study.doc))
    if arms is None:
        arms = arms_of_study(study.doc["source"].get("label") or "runs", study, False)
        arms[0].main = True
    figures = save_all(study, out)
    rows = data_ablation_rows(data_arms(arms))
    for name, fig in (
        ("fig3_data_ablation", fig3_data_ablation(data_arms(arms), rows)),
        ("fig5_tokenizer_envelopes", fig5_tokenizer_envelopes(tokenizer_arms(arms))),
    ):
        if fig is not None:
            style.save(fig, out, name)
            figures.append(name)
    if "fig5_tokenizer_envelopes" in figures and "fig5_tokenizers" in figures:
        figures.remove("fig5_tokenizers")  # its loss envelopes are the new figure's first panel
        for ext in ("png", "svg"):
            (out / f"fig5_tokenizers.{ext}").unlink(missing_ok=True)
    for exp, doc in (compared or {}).items():
        write_bytes_atomic(out / f"fit-{exp}.json", fit_json_bytes(doc))
    if compared is not None:
        data = json.dumps(comparison_doc(arms, rows), indent=1, sort_keys=True) + "\n"
        write_bytes_atomic(out / "comparison.json", data.encode())
    blocks = build_blocks(study, figures, title, arms)
    if schedules is not None:
        from slmscale.laws.study import rounded
        from slmscale.report import schedules as sched

        fig = sched.figure(schedules)
        if fig is not None:
            style.save(fig, out, "fig_schedules")
            figures.append("fig_schedules")
        data = json.dumps(rounded(schedules), indent=1, sort_keys=True) + "\n"
        write_bytes_atomic(out / "schedules.json", data.encode())
        blocks += sched.blocks(schedules, figures)
    write_bytes_atomic(out / "report.md", to_markdown(blocks).encode())
    write_bytes_atomic(out / "report.html", to_html(blocks, out, title).encode())
    return figures


def run(args) -> int:
    if (args.compare or args.compare_schedule) and not args.experiment:
        raise UserError(
            "--compare and --compare-schedule name MLflow experiments: give the main one with "
            "--experiment"
        )
    study = study_from_args(args)
    out = Path(args.out)
    title = args.title or f"Scaling report: {study.doc['source'].get('label')}"
    arms, compared = None, None
    if args.compare:
        from slmscale.report.compare import build_arms

        arms, compared = build_arms(args, study)
    schedules = None
    if args.compare_schedule:
        from slmscale.report.schedules import comparison, fit_other

        other = fit_other(args, args.compare_schedule)
        exp = args.experiment[0] if isinstance(args.experiment, list) else args.experiment
        schedules = comparison(study, other, args.tracking_uri, exp, args.compare_schedule)
    figures = write_report(study, out, title, arms, compared, schedules)
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
