"""report.md and a self-contained report.html from one list of blocks.

The content is built once as blocks (heading, paragraph, table, figure) and rendered twice:
Markdown beside PNG files, and HTML with every PNG inlined as base64 so the file stands alone.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from slmscale.laws.design import identification_blocks
from slmscale.laws.study import Study
from slmscale.report import tables
from slmscale.report.numbers import not_identified_names, num, verdict, with_interval
from slmscale.report.seeds import seed_blocks


def _caveats(doc: dict) -> str:
    """The few lines a reader needs before any number: data, identification, extrapolation."""
    sizes = (doc.get("fitted_range") or {}).get("params")
    n_runs = len(doc.get("runs_used", [])) + len(
        (doc.get("data_constrained") or {}).get("runs_used", [])
    )
    parts = [f"Caveats: {n_runs} runs"]
    if sizes:
        parts.append(f"model sizes {num(sizes[0], 3)}-{num(sizes[1], 3)} parameters")
    flops = (doc.get("fitted_range") or {}).get("flops")
    if flops:
        parts.append(
            f"compute {num(flops[0], 3)}-{num(flops[1], 3)} FLOPs (beyond it is extrapolation)"
        )
    parts.append(f"compute counted as {_flops_words(doc)}")
    flagged = not_identified_names(doc)
    parts.append(
        f"not identified: {', '.join(flagged)}" if flagged else "every constant identified"
    )
    if "bootstrap" not in doc:
        parts.append("no intervals (--bootstrap 0)")
    return "; ".join(parts) + "."


def _flops_words(doc: dict) -> str:
    d = doc.get("flops_definition") or "6nd"
    if d == "full":
        return "the full count (6ND plus attention over the context and the output layer)"
    return "6ND (6 x non-embedding parameters x tokens, the paper's)"


def _intro_blocks(doc: dict) -> list:
    if "bootstrap" in doc:
        ci_note = (
            f"95% intervals of every number: one bootstrap over runs "
            f"({doc['bootstrap']['n']} replicates; {doc['bootstrap']['resample']}; "
            f"{doc['bootstrap'].get('interval', 'percentile')})."
        )
    else:
        ci_note = "No bootstrap was run (--bootstrap 0): no intervals."
    method = doc.get("interval_method")
    if method and method not in ci_note:
        ci_note += f" Intervals of the law's constants: {method}."
    flagged = not_identified_names(doc)
    rule = doc.get("identification_rule", "")
    ident = (
        f"Not identified by these runs: {', '.join(flagged)}; a value so marked is an artefact "
        "of the runs (or of the search box), not a measurement, and a value on the search-box "
        "edge is printed as a bound. Each constant's checks are in the verdicts table below. "
        f"Rule: {rule}."
        if flagged
        else f"Every constant with an interval is identified by the rule: {rule}."
    )
    return [("p", ci_note), ("p", ident)]


def _eq6_line(doc: dict) -> str:
    co, ci = doc["compute_optimal"], doc.get("ci95") or {}

    def c(k, digits=3):
        return with_interval(co[k], ci.get(k), verdict(doc, k), digits)

    return (
        f"Eq. 6: N_opt = G (C/6)^a, D_opt = (C/6)^b / G with G = {c('G', 4)}, a = {c('a')}, "
        f"b = {c('b')} (paper: a and b both about 0.5)."
    )


def _envelope_line(doc: dict) -> str:
    env = doc["envelope"]
    law = env["law"] or {}
    gamma = with_interval(
        law.get("gamma"), env.get("gamma_ci95"), verdict(doc, "envelope_gamma"), 4
    )
    return (
        f"Frontier of minimal test loss per FLOP over {env['n_points']} points ({env['basis']}): "
        f"{env['n_frontier']} points; L = {num(law.get('k'))} C^gamma with gamma = {gamma} (R^2 "
        f"in log space {num(law.get('r2_log'))}; interval: bootstrap over runs, all eval points "
        f"of a run together). Compute: {_flops_words(doc)}."
    )


def _quality_blocks(doc: dict) -> list:
    q = doc["quality"]
    lo = q["leave_largest_size_out"]
    text = (
        f"Eq. 4 on {len(q['residuals'])} single-epoch runs: R^2 = {num(q['r2'])}, RMSE of log "
        f"residuals = {num(q['rmse_log'])}, max |relative error| = {num(q['max_abs_rel_error'])}."
    )
    if "skipped" in lo:
        lo_text = f"Leave-largest-size-out: skipped ({lo['skipped']})."
    else:
        lo_text = (
            f"Leave-largest-size-out: refit without N = {num(lo['held_out_params'])} "
            f"({lo['n_held_out']} runs) predicts them with mean |relative error| "
            f"{num(lo['mean_abs_rel_error'])} (max {num(lo['max_abs_rel_error'])}, mean "
            f"signed {num(lo['mean_rel_error'])})."
        )
    return [
        ("p", text),
        ("p", R2_TEXT),
        ("p", lo_text),
        ("fig", "fig_residuals", "Residuals of Eq. 4"),
    ]


R2_TEXT = (
    "What R^2 can and cannot tell: R^2 measures how much of the spread of the losses the "
    "fitted surface follows. It is high whenever losses fall smoothly with N and D, which "
    "they do for a whole ridge of (A, alpha) and (B, beta) pairs: on the paper's grid with "
    "1% noise alpha ranges 0.02-0.51 across noise draws while R^2 stays 0.98-0.99. So a high "
    "R^2 says the law describes these runs; it does not say the constants are identified, "
    "nor that the law extrapolates. Identification is read from the verdicts (interval over "
    "the runs and simulation at the fitted law), extrapolation from the leave-largest-size-out "
    "error."
)


def _rstar_blocks(doc: dict) -> list:
    if "data_constrained" not in doc:
        return []
    return [
        (
            "p",
            "R* intervals: " + doc["data_constrained"]["ci95_method"] + ". The objective is a "
            "flat ridge in (R*_N, R*_D); its profile (Eq. 4 frozen at its estimate) is drawn "
            "below.",
        ),
        ("fig", "fig_rstar_profile", "Objective of Eq. 7/8 over (R*_N, R*_D)"),
    ]


def _run_list_blocks(doc: dict) -> list:
    """Excluded runs, outliers and duplicates the laws named, runs missing a metric."""
    blocks: list = [
        ("h2", "Excluded runs"),
        ("table", ["run_id", "reason"], [[e["run_id"], e["reason"]] for e in doc["excluded"]]),
    ]
    outliers = doc.get("outliers") or []
    if outliers:
        rows = [
            [e["run_id"], num(e.get("log_residual"), 3), num(e.get("mad_z"), 3),
             "yes" if e.get("excluded", True) else "no (kept: --keep-outliers)",
             e.get("reason", "")]
            for e in outliers
        ]  # fmt: skip
        head = ["run_id", "log residual", "robust z", "excluded", "reason"]
        blocks += [("h2", "Outliers (named by the fit)"), ("table", head, rows)]
    dups = doc.get("duplicates") or []
    if dups:
        rows = [[e["run_id"], str(e.get("same_as", "-")), e.get("reason", "")] for e in dups]
        blocks += [
            ("h2", "Duplicated runs (named by the fit)"),
            ("table", ["run_id", "same as", "reason"], rows),
        ]
    missing = doc.get("runs_missing_metrics") or {}
    if missing:
        head = ["metric", "runs missing it (left out of that metric's fits)"]
        blocks.append(("table", head, [[m, ", ".join(r)] for m, r in missing.items()]))
    return blocks


def _table3_note(doc: dict) -> str:
    ref = doc.get("reference_label") or "none given"
    at_chance = [m for m, d in (doc.get("downstream") or {}).items() if d.get("at_chance")]
    text = (
        f"Definition (one function for speech and text): {doc.get('gamma_q_definition', '')}. "
        f"Text reference: {ref}; C = 6 x non-embedding params x tokens seen. The paper's own text "
        "exponents come from evaluations that are not public, so its text column is printed, not "
        "recomputed; only BLiMP has a published Pythia counterpart (no cloze results). "
        "Raw accuracy starts at chance, so its log-log slope shrinks as accuracy rises (Pythia's "
        "first checkpoint, at ~7e17 FLOPs, already scores > 0.7 on BLiMP); the error-rate exponent "
        "does not have that bias, which is why both are shown."
    )
    if at_chance:
        text += (
            " At chance (its best runs do not beat chance by the laws' test), so no exponent, "
            f"no envelope line and no comparison: {', '.join(sorted(at_chance))}."
        )
    return text


def build_blocks(study: Study, figures: list[str], title: str, arms: list | None = None) -> list:
    """The whole report as blocks; `arms` (slmscale.report.arms) add Figures 3 and 5."""
    from slmscale.report.ablation_blocks import fig3_blocks, fig5_blocks
    from slmscale.report.arms import arms_of_study, data_ablation_rows, data_arms, tokenizer_arms

    doc = study.doc
    if arms is None:
        arms = arms_of_study(doc["source"].get("label") or "runs", study, False)
        arms[0].main = True
    tok_arms, d_arms = tokenizer_arms(arms), data_arms(arms)
    blocks: list = [
        ("h1", title),
        ("p", _caveats(doc)),
        (
            "p",
            f"Source: {doc['source'].get('label')}. Law: {doc['law']}; Huber delta "
            f"{doc['huber_delta']}; {len(doc['runs_used'])} single-epoch runs used; "
            f"{len(doc['excluded'])} excluded."
            + (f" Law chosen: {doc['law_choice']}." if doc.get("law_choice") else ""),
        ),
        ("h2", "Table 4: scaling-law constants (Eq. 4 and Eq. 7), ours beside the paper's"),
        ("table", *tables.table4(doc, tok_arms)),
        *_intro_blocks(doc),
        ("table", *tables.verdict_table(doc)),
        ("p", _eq6_line(doc)),
        *_rstar_blocks(doc),
        *seed_blocks(doc, study.table),
        ("h2", "Figure 1: loss envelope"),
        ("p", _envelope_line(doc)),
        ("fig", "fig1_loss_envelope", "Loss against compute; black: envelope"),
        ("h2", "Figure 2 and Table 3: downstream envelopes against compute"),
        ("table", *tables.table3(doc)),
        ("p", _table3_note(doc)),
        ("fig", "fig2_downstream_envelope", "Downstream metrics against compute"),
        *fig3_blocks(d_arms, data_ablation_rows(d_arms)),
        ("h2", "The Eq. 4 fit per model size"),
        ("p", "The observed final losses against the fitted law, one line per model size."),
        ("fig", "fig3_law_fit", "Eq. 4 fit per model size"),
        ("h2", "Figure 4: downstream metrics against test loss"),
        ("table", *tables.figure4_table(doc)),
        ("fig", "fig4_loss_vs_metric", "Metric against test loss; line over the unsaturated range"),
        *fig5_blocks(tok_arms, doc),
        ("h2", "Fit quality"),
        *_quality_blocks(doc),
        *identification_blocks(doc, study.single, study.multi),  # slmscale design, on these runs
        *_run_list_blocks(doc),
    ]
    return [b for b in blocks if b[0] != "fig" or b[1] in figures]


def to_markdown(blocks: list) -> str:
    out = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2"):
            out.append(("# " if kind == "h1" else "## ") + b[1])
        elif kind == "p":
            out.append(b[1])
        elif kind == "table":
            head, rows = b[1], b[2]
            if not rows:
                out.append("(none)")
                continue
            lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            rows = [list(r) + [""] * (len(head) - len(r)) for r in rows]
            lines += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
            out.append("\n".join(lines))
        elif kind == "fig":
            out.append(f"![{b[2]}]({b[1]}.png)")
    return "\n\n".join(out) + "\n"


def _cells(row: list[str], width: int) -> str:
    """A row's cells; a short row's last cell spans the rest (a note under a table's row)."""
    e = html.escape
    cells = [f"<td>{e(c)}</td>" for c in row[:-1]]
    span = width - len(row) + 1
    cells.append(
        f'<td colspan="{span}">{e(row[-1])}</td>' if span > 1 else f"<td>{e(row[-1])}</td>"
    )
    return "".join(cells)


def to_html(blocks: list, fig_dir: Path, title: str) -> str:
    e = html.escape
    body = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{e(b[1])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{e(b[1])}</p>")
        elif kind == "table":
            head, rows = b[1], b[2]
            if not rows:
                body.append("<p>(none)</p>")
                continue
            th = "".join(f"<th>{e(h)}</th>" for h in head)
            trs = "".join(f"<tr>{_cells(r, len(head))}</tr>" for r in rows)
            body.append(f"<table><tr>{th}</tr>{trs}</table>")
        elif kind == "fig":
            data = base64.b64encode((fig_dir / f"{b[1]}.png").read_bytes()).decode()
            body.append(
                f'<figure><img alt="{e(b[2])}" src="data:image/png;base64,{data}">'
                f"<figcaption>{e(b[2])}</figcaption></figure>"
            )
    # 62em (~990 px) holds the widest figure (style.MAX_WIDTH_IN, 960 px) at its own size: no
    # figure is shrunk, so its 9 pt text stays readable; figures keep no side margins.
    style = (
        "body{font-family:sans-serif;max-width:62em;margin:auto;padding:0 8px}"
        "table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #ccc;"
        "padding:2px 6px}figure{margin:1em 0}img{max-width:100%}"
    )
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{e(title)}</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
