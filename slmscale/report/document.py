"""report.md and a self-contained report.html from one list of blocks.

The content is built once as blocks (heading, paragraph, table, figure) and rendered twice:
Markdown beside PNG files, and HTML with every PNG inlined as base64 so the file stands alone.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from slmscale import paper
from slmscale.laws.design import identification_blocks
from slmscale.laws.study import Study


def _f(v, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float | int) and not isinstance(v, bool):
        return f"{v:.{digits}g}"
    return str(v)


def _ci(ci) -> str:
    if not ci or ci == [None, None]:
        return "-"
    lo, hi = ci
    return f"[{_f(lo)}, {'inf' if hi is None else _f(hi)}]"


def _table4(doc: dict) -> tuple[list[str], list[list[str]]]:
    keys = ["E", "A", "B", "alpha", "beta", "R_star_N", "R_star_D"]
    rows = [["ours (" + doc["law"] + ")", *(_f(doc["params"].get(k)) for k in keys)]]
    rows.append(["ours 95% CI", *(_ci(doc["ci95"].get(k)) for k in keys)])
    for name, tok in doc.get("tokenizers", {}).items():
        if tok["params"]:
            rows.append([f"ours, tokenizer {name}", *(_f(tok["params"].get(k)) for k in keys)])
    for name, vals in paper.TABLE4.items():
        rows.append([f"paper: {name}", *(_f(vals.get(k)) for k in keys)])
    return ["", *keys], rows


def _with_ci(v, ci, digits: int = 3) -> str:
    if v is None:
        return "-"
    return f"{_f(v, digits)} {_ci(ci)}" if ci and ci != [None, None] else _f(v, digits)


def _table3(doc: dict) -> tuple[list[str], list[list[str]]]:
    head = [
        "metric",
        "transform",
        "speech (ours)",
        "text ref. (ours)",
        "ratio text/speech (ours)",
        "speech (paper)",
        "text (paper)",
        "ratio (paper)",
    ]
    rows = []
    for r in doc["table3"]:
        ci = r.get("ci95") or {}
        if r.get("speech_at_chance"):
            rows.append(
                [
                    r["metric"],
                    "-",
                    "at chance: no exponent",
                    "-",
                    "-",
                    _f(r["gamma_speech_paper"], 3),
                    _f(r["gamma_text_paper"], 3),
                    _f(r["ratio_paper"], 3),
                ]
            )
            continue
        rows.append(
            [
                r["metric"],
                "raw accuracy",
                _with_ci(r["gamma_speech_ours"], ci.get("gamma_speech_ours")),
                _with_ci(r["gamma_text_reference"], ci.get("gamma_text_reference")),
                _with_ci(r["ratio_ours"], ci.get("ratio_ours")),
                _f(r["gamma_speech_paper"], 3),
                _f(r["gamma_text_paper"], 3),
                _f(r["ratio_paper"], 3),
            ]
        )
        er = r.get("error_rate") or {}
        rows.append(
            [
                r["metric"],
                "error rate",
                _with_ci(er.get("gamma_speech_ours"), ci.get("error_rate.gamma_speech_ours")),
                _with_ci(er.get("gamma_text_reference"), ci.get("error_rate.gamma_text_reference")),
                _with_ci(er.get("ratio_ours"), ci.get("error_rate.ratio_ours")),
                "-",
                "-",
                "-",
            ]
        )
    return head, rows


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
        "does not have "
        "that bias, which is why both are shown."
    )
    if at_chance:
        text += (
            f" Never beat chance (best run below chance + 0.02), so no exponent: "
            f"{', '.join(sorted(at_chance))}."
        )
    return text


def _quality_blocks(doc: dict) -> list:
    q = doc["quality"]
    lo = q["leave_largest_size_out"]
    text = (
        f"Eq. 4 on {len(q['residuals'])} single-epoch runs: R^2 = {_f(q['r2'])}, RMSE of log residuals = "
        f"{_f(q['rmse_log'])}, max |relative error| = {_f(q['max_abs_rel_error'])}."
    )
    if "skipped" in lo:
        lo_text = f"Leave-largest-size-out: skipped ({lo['skipped']})."
    else:
        lo_text = (
            f"Leave-largest-size-out: refit without N = {_f(lo['held_out_params'])} "
            f"({lo['n_held_out']} runs) predicts them with mean |relative error| "
            f"{_f(lo['mean_abs_rel_error'])} (max {_f(lo['max_abs_rel_error'])}, mean "
            f"signed {_f(lo['mean_rel_error'])})."
        )
    r2_text = (
        "What R^2 can and cannot tell: R^2 measures how much of the spread of the losses the "
        "fitted surface follows. It is high whenever losses fall smoothly with N and D, which "
        "they do for a whole ridge of (A, alpha) and (B, beta) pairs: on the paper's grid with "
        "1% noise alpha ranges 0.02-0.51 across noise draws while R^2 stays 0.98-0.99. So a high "
        "R^2 says the law describes these runs; it does not say the constants are identified, "
        "nor that the law extrapolates. Identification is read from the bootstrap intervals "
        "(the not-identified list above), extrapolation from the leave-largest-size-out error."
    )
    return [
        ("p", text),
        ("p", r2_text),
        ("p", lo_text),
        ("fig", "fig_residuals", "Residuals of Eq. 4"),
    ]


def _tokenizer_blocks(doc: dict) -> list:
    if not doc.get("tokenizers"):
        return [
            (
                "p",
                f"One tokenizer in these runs ({doc.get('tokenizer') or 'unnamed'}): nothing to "
                "compare (the paper's Figure 5 sets raw units against unigram-compressed ones); "
                "the figure shows this tokenizer's loss envelope.",
            )
        ]
    rows = [
        [
            n,
            str(t["n_runs"]),
            *(_f((t["params"] or {}).get(k)) for k in ("E", "A", "B", "alpha", "beta")),
            _f((t["envelope"] or {}).get("gamma")),
            t["reason"] or "",
        ]
        for n, t in doc["tokenizers"].items()
    ]
    head = ["tokenizer", "runs", "E", "A", "B", "alpha", "beta", "envelope gamma", "note"]
    return [("table", head, rows)]


def _caveats(doc: dict) -> str:
    """The few lines a reader needs before any number: data, identification, extrapolation."""
    sizes = (doc.get("fitted_range") or {}).get("params")
    n_runs = len(doc.get("runs_used", [])) + len(
        (doc.get("data_constrained") or {}).get("runs_used", [])
    )
    parts = [f"Caveats: {n_runs} runs"]
    if sizes:
        parts.append(f"model sizes {_f(sizes[0], 3)}-{_f(sizes[1], 3)} parameters")
    flops = (doc.get("fitted_range") or {}).get("flops")
    if flops:
        parts.append(
            f"compute {_f(flops[0], 3)}-{_f(flops[1], 3)} FLOPs (beyond it is extrapolation)"
        )
    flagged = doc.get("not_identified") or []
    parts.append(
        f"not identified: {', '.join(flagged)}" if flagged else "every constant identified"
    )
    if "bootstrap" not in doc:
        parts.append("no intervals (--bootstrap 0)")
    return "; ".join(parts) + "."


def build_blocks(study: Study, figures: list[str], title: str) -> list:
    doc = study.doc
    co, env = doc["compute_optimal"], doc["envelope"]
    ci = doc["ci95"]
    if "bootstrap" in doc:
        ci_note = (
            f"95% intervals of every number: one bootstrap over runs "
            f"({doc['bootstrap']['n']} replicates; {doc['bootstrap']['resample']}; "
            f"{doc['bootstrap'].get('interval', 'percentile')})."
        )
    else:
        ci_note = "No bootstrap was run (--bootstrap 0): no intervals."
    flagged = doc.get("not_identified") or []
    ident = (
        f"Not identified by these runs: {', '.join(flagged)}. Rule: "
        f"{doc.get('identification_rule', '')}. A value so marked is an artefact of the runs "
        "(or of the search box), not a measurement."
        if flagged
        else "Every constant with an interval is identified by the rule: "
        f"{doc.get('identification_rule', '')}."
    )
    blocks: list = [
        ("h1", title),
        ("p", _caveats(doc)),
        (
            "p",
            f"Source: {doc['source'].get('label')}. Law: {doc['law']}; Huber delta "
            f"{doc['huber_delta']}; {len(doc['runs_used'])} single-epoch runs used; "
            f"{len(doc['excluded'])} excluded.",
        ),
        ("h2", "Table 4: scaling-law constants (Eq. 4 and Eq. 7), ours beside the paper's"),
        ("table", *_table4(doc)),
        ("p", ci_note),
        ("p", ident),
        (
            "p",
            f"Eq. 6: N_opt = G (C/6)^a, D_opt = (C/6)^b / G with G = {_with_ci(co['G'], ci.get('G'), 4)}, "
            f"a = {_with_ci(co['a'], ci.get('a'))}, b = {_with_ci(co['b'], ci.get('b'))} "
            "(paper: a and b both about 0.5).",
        ),
    ]
    if "data_constrained" in doc:
        blocks += [
            (
                "p",
                "R* intervals: " + doc["data_constrained"]["ci95_method"] + ". The "
                "objective is a flat ridge in (R*_N, R*_D); its profile (Eq. 4 frozen at its "
                "estimate) is drawn below.",
            ),
            ("fig", "fig_rstar_profile", "Objective of Eq. 7/8 over (R*_N, R*_D)"),
        ]
    law = env["law"]
    blocks += [
        ("h2", "Figure 1: loss envelope"),
        (
            "p",
            f"Frontier of minimal test loss per FLOP over {env['n_points']} points "
            f"({env['basis']}): {env['n_frontier']} points; L = {_f(law and law['k'])} "
            f"C^{_with_ci(law and law['gamma'], env.get('gamma_ci95'), 4)} (R^2 in log space "
            f"{_f(law and law['r2_log'])}; interval: bootstrap over runs, all eval points of a "
            "run together).",
        ),
        ("fig", "fig1_loss_envelope", "Loss against compute; black: envelope"),
        ("h2", "Figure 2 and Table 3: downstream envelopes against compute"),
        ("table", *_table3(doc)),
        ("p", _table3_note(doc)),
        ("fig", "fig2_downstream_envelope", "Downstream metrics against compute"),
        ("h2", "The Eq. 4 fit per model size"),
        (
            "p",
            "The observed final losses against the fitted law, one line per model size. (The "
            "paper's Figure 3, a data ablation, appears when the study runs one: `slmscale "
            "demo` adds it below.)",
        ),
        ("fig", "fig3_law_fit", "Eq. 4 fit per model size"),
        ("h2", "Figure 4: downstream metrics against test loss"),
        (
            "table",
            ["metric", "slope", "intercept", "Pearson r", "loss range", "runs", "saturated runs"],
            [
                [
                    m,
                    _f(d["linear"]["slope"]),
                    _f(d["linear"]["intercept"]),
                    _f(d["linear"]["pearson_r"], 3),
                    f"[{_f(d['linear']['loss_min'])}, {_f(d['linear']['loss_max'])}]",
                    str(d["linear"]["n_points"]),
                    str(d["linear"]["n_saturated"]),
                ]
                for m, d in doc["downstream"].items()
                if d["linear"]
            ],
        ),
        ("fig", "fig4_loss_vs_metric", "Metric against test loss; line over the unsaturated range"),
        ("h2", "Figure 5: tokenizers"),
        *_tokenizer_blocks(doc),
        ("fig", "fig5_tokenizers", "Loss envelopes per tokenizer"),
        ("h2", "Fit quality"),
        *_quality_blocks(doc),
        *identification_blocks(doc, study.single, study.multi),  # slmscale design, on these runs
        ("h2", "Excluded runs"),
        ("table", ["run_id", "reason"], [[e["run_id"], e["reason"]] for e in doc["excluded"]]),
    ]
    missing = doc.get("runs_missing_metrics") or {}
    if missing:
        blocks.append(
            (
                "table",
                ["metric", "runs missing it (left out of that metric's fits)"],
                [[m, ", ".join(r)] for m, r in missing.items()],
            )
        )
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
            lines += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
            out.append("\n".join(lines))
        elif kind == "fig":
            out.append(f"![{b[2]}]({b[1]}.png)")
    return "\n\n".join(out) + "\n"


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
            trs = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
            body.append(f"<table><tr>{th}</tr>{trs}</table>")
        elif kind == "fig":
            data = base64.b64encode((fig_dir / f"{b[1]}.png").read_bytes()).decode()
            body.append(
                f'<figure><img alt="{e(b[2])}" src="data:image/png;base64,{data}">'
                f"<figcaption>{e(b[2])}</figcaption></figure>"
            )
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:auto}table{border-collapse:"
        "collapse}td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}"
    )
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{e(title)}</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
