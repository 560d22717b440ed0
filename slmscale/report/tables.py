"""The report's tables of fitted numbers: Table 4, the verdicts, Table 3, Figure 4's lines, the
seed spread.  Every number goes through slmscale.report.numbers, so it carries its verdict."""

from __future__ import annotations

from slmscale import paper
from slmscale.report.arms import EQ4, Arm
from slmscale.report.intervals import slope_interval
from slmscale.report.numbers import (
    check_cells,
    interval_cell,
    not_identified_text,
    num,
    value_cell,
    verdict,
    verdict_cell,
    with_interval,
)

TABLE4_KEYS = ("E", "A", "B", "alpha", "beta", "R_star_N", "R_star_D")
VERDICT_ORDER = (*TABLE4_KEYS, "G", "a", "b", "envelope_gamma", "envelope")


def table4(doc: dict, tokenizer_arms: list[Arm]) -> tuple[list[str], list[list[str]]]:
    """Ours (values with their verdict marks, then intervals), per tokenizer, the paper's."""
    keys = [k for k in TABLE4_KEYS if k in doc["params"]]
    ci = doc.get("ci95") or {}
    rows = [
        [f"ours ({doc['law']})", *(value_cell(doc["params"][k], verdict(doc, k)) for k in keys)],
        ["ours 95% CI", *(interval_cell(ci.get(k), verdict(doc, k)) for k in keys)],
    ]
    for arm in tokenizer_arms[1:]:
        rows += tokenizer_rows(arm, keys)
    for name, vals in paper.TABLE4.items():
        rows.append([f"paper: {name}", *(num(vals.get(k)) for k in keys)])
    return ["", *keys], rows


def tokenizer_rows(arm: Arm, keys: list[str]) -> list[list[str]]:
    """Table 4 rows of one more tokenizer: its values, then its intervals or why none."""
    name = f"ours, tokenizer {arm.tokenizer}"
    block = arm.fit or {}
    params = block.get("params") or {}
    if not params:
        return [[name, *("-" for _ in keys)], [f"{name}: no fit", arm.reason or "-"]]
    cells = [value_cell(params.get(k), verdict(block, k)) if k in EQ4 else "-" for k in keys]
    ci = block.get("ci95") or {}
    if any((ci.get(k) or [None])[0] is not None for k in EQ4):
        return [[name, *cells], [f"{name}: 95% CI", *(interval_cell(ci.get(k), verdict(block, k))
                                                     if k in EQ4 else "-" for k in keys)]]  # fmt: skip
    reason = block.get("not_identified_reason") or arm.reason or "no interval computed"
    marked = [c if c == "-" or c.endswith(")") else f"{c} (not identified)" for c in cells]
    return [[name, *marked], [f"{name}: why", not_identified_text(reason)]]


def verdict_table(doc: dict) -> tuple[list[str], list[list[str]]]:
    """One row per constant the laws judged: estimate, interval, each check, the verdict."""
    vs = doc.get("verdicts")
    values = {**doc["params"], **{k: doc["compute_optimal"].get(k) for k in ("G", "a", "b")}}
    env = (doc.get("envelope") or {}).get("law") or {}
    values["envelope_gamma"] = values["envelope"] = env.get("gamma")
    for m, d in (doc.get("downstream") or {}).items():
        g = (d.get("gamma_q") or {}).get("raw", {}).get("gamma") if d.get("gamma_q") else None
        if g is not None:
            values[f"gamma_q.{m}"] = g[0] if isinstance(g, list) else g
    if isinstance(vs, dict):
        names = [k for k in VERDICT_ORDER if k in vs] + sorted(set(vs) - set(VERDICT_ORDER))
    else:
        names = [k for k in (*TABLE4_KEYS, "G", "a", "b") if k in values]
    rows = []
    for k in names:
        v = verdict(doc, k)
        ci = (v or {}).get("interval") or (doc.get("ci95") or {}).get(k)
        value = values.get(k, (v or {}).get("estimate"))
        rows.append(
            [k, value_cell(value, v), interval_cell(ci, v), *check_cells(v), verdict_cell(v)]
        )  # fmt: skip
    head = ["constant", "estimate", "95% interval", "interval check", "simulation check", "verdict"]
    return head, rows


def _chance_cell(d: dict) -> str:
    test = d.get("chance_test") or {}
    if not test:
        return "at chance: no exponent"
    return (
        f"at chance: best {num(test.get('best_acc'), 3)} on {test.get('n_items')} items over "
        f"{test.get('n_runs')} runs, p = {num(test.get('p_value'), 2)} (binomial, corrected "
        "for the runs): no exponent"
    )


def table3(doc: dict) -> tuple[list[str], list[list[str]]]:
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
    down = doc.get("downstream") or {}
    for r in doc["table3"]:
        m, ci = r["metric"], r.get("ci95") or {}
        paper_cells = [num(r[k], 3) for k in ("gamma_speech_paper", "gamma_text_paper")]
        paper_cells.append(num(r["ratio_paper"], 3))
        if r.get("speech_at_chance"):
            rows.append([m, "-", _chance_cell(down.get(m) or {}), "-", "-", *paper_cells])
            continue

        def cell(key, ci_key, value, ci=ci):
            return with_interval(value, ci.get(ci_key), verdict(doc, key), 3, "bootstrap" in doc)

        rows.append(
            [m, "raw accuracy",
             cell(f"gamma_q.{m}", "gamma_speech_ours", r["gamma_speech_ours"]),
             cell(f"gamma_q_text.{m}", "gamma_text_reference", r["gamma_text_reference"]),
             cell(f"ratio.{m}", "ratio_ours", r["ratio_ours"]), *paper_cells]
        )  # fmt: skip
        er = r.get("error_rate") or {}
        rows.append(
            [m, "error rate",
             cell(f"gamma_q_error.{m}", "error_rate.gamma_speech_ours", er.get("gamma_speech_ours")),
             cell(f"gamma_q_text_error.{m}", "error_rate.gamma_text_reference",
                  er.get("gamma_text_reference")),
             cell(f"ratio_error.{m}", "error_rate.ratio_ours", er.get("ratio_ours")),
             "-", "-", "-"]
        )  # fmt: skip
    return head, rows


def figure4_table(doc: dict) -> tuple[list[str], list[list[str]]]:
    head = ["metric", "slope [95% CI]", "intercept", "Pearson r", "loss range", "runs",
            "saturated runs"]  # fmt: skip
    rows = []
    for m, d in (doc.get("downstream") or {}).items():
        lin = d.get("linear")
        if not lin:
            continue
        if d.get("at_chance"):
            rows.append([m, "at chance: no line", "-", "-", "-", str(lin["n_points"]), "-"])
            continue
        ci = slope_interval(doc, m)
        slope = num(lin["slope"]) + (f" [{num(ci[0])}, {num(ci[1])}]" if ci else " (no interval)")
        rows.append(
            [m, slope, num(lin["intercept"]), num(lin["pearson_r"], 3),
             f"[{num(lin['loss_min'])}, {num(lin['loss_max'])}]", str(lin["n_points"]),
             str(lin["n_saturated"])]
        )  # fmt: skip
    return head, rows
