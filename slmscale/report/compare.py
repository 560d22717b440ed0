"""`slmscale report --compare EXP...`: the experiments set against the main one, as arms.

Each compared experiment is fitted exactly as the main one (`slmscale fit` on that experiment:
Eq. 4 with the same bootstrap, so its constants carry the laws' intervals and verdicts); an
experiment too small for Eq. 4 (the data ablation's three runs, say) still gives its runs, with
the fit's one-line reason.  The number of items each benchmark scored is not a run metric: it
is read from each run's eval details artifact (`eval/breakdown.json`, `items_scored`), for the
few runs Figure 3 shows, so their accuracies get binomial intervals.

Edge module: reads MLflow through slmscale.tracking and the fit command's loaders.
"""

from __future__ import annotations

import argparse
import sys

from slmscale.errors import UserError
from slmscale.report.arms import Arm, arms_of_study, arms_without_fit, data_ablation_rows, data_arms
from slmscale.tracking.fits import items_scored


def _study_of(args: argparse.Namespace, experiment: str):
    """(study or None, runs table, reason): the fit of one compared experiment."""
    from slmscale.commands.fit import load_inputs, study_from_args
    from slmscale.laws.table import validate_runs

    sub = argparse.Namespace(**{**vars(args), "experiment": [experiment], "law": "chinchilla"})
    sub.unique_tokens = None
    print(f"report: fitting compared experiment {experiment}", file=sys.stderr)
    try:
        study = study_from_args(sub)
        return study, study.table, None
    except UserError as exc:
        reason = str(exc).split(": ", 1)[-1]
        runs, _, source = load_inputs(sub)
        table, _ = validate_runs(runs, source["label"])
        return None, table, f"no Eq. 4 fit ({reason})"


def _fill_items(arms: list[Arm], tracking_uri: str, doc: dict) -> None:
    """Item counts for the runs Figure 3 shows: the artifact, else the laws' chance test."""
    fallback = {
        m: (d.get("chance_test") or {}).get("n_items")
        for m, d in (doc.get("downstream") or {}).items()
    }
    rows = data_ablation_rows(data_arms(arms))
    wanted = {r for row in rows for r in row["runs"]}
    for arm in arms:
        for run_id in arm.table.run_id:
            if run_id in wanted:
                got = items_scored(tracking_uri, run_id)
                arm.n_items[run_id] = {
                    m: got.get(m) or fallback.get(m)
                    for m in arm.table.metrics
                    if m in got or fallback.get(m)
                }


def build_arms(args: argparse.Namespace, study) -> tuple[list[Arm], dict]:
    """Every arm of the study and of the compared experiments; and each compared fit's doc."""
    compare = list(getattr(args, "compare", None) or [])
    main_exps = list(args.experiment or [])
    several = bool(compare)
    label = "+".join(main_exps) if main_exps else (study.doc.get("source") or {}).get("label", "")
    arms = arms_of_study(label or "runs", study, several)
    arms[0].main = True
    docs = {}
    for exp in compare:
        if exp in main_exps:
            raise UserError(f"--compare {exp}: already the main experiment (--experiment)")
        sub, table, reason = _study_of(args, exp)
        if sub is not None:
            arms += arms_of_study(exp, sub, several)
            docs[exp] = sub.doc
        else:
            arms += arms_without_fit(exp, table, reason)
    if compare:
        _fill_items(arms, args.tracking_uri, study.doc)
    return arms, docs
