"""The paper's Table 2 (hours, HuBERT tokens, unigram tokens per dataset) for what we made.

Our rows come from the `counts` of meta.json; the paper's row for a dataset of the same name
(case-insensitive) is printed beside it, so the units per hour can be compared at a glance
(the paper: about 70k HuBERT-25Hz units per hour after dedup).
"""

from __future__ import annotations

from slmscale.paper import TABLE2


def _total(counts: dict, dataset: str, key: str) -> float:
    return sum(split[key] for split in counts.get(dataset, {}).values())


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def format_table2(counts: dict, unigram_counts: dict | None = None) -> str:
    """Table 2 analogue: ours (hours, units, unigram tokens, units/hour) beside the paper's."""
    paper = {row["dataset"].lower(): row for row in TABLE2}
    header = (
        f"{'dataset':<16}{'hours':>10}{'units':>10}{'unigram':>10}{'units/h':>10}"
        f"   | paper: {'hours':>8}{'HuBERT':>8}{'unigram':>8}{'units/h':>9}"
    )
    lines = ["Table 2 (this run | paper)", header, "-" * len(header)]
    names = sorted(set(counts) | set(unigram_counts or {}))
    tot = {"h": 0.0, "u": 0, "g": 0}
    for name in names:
        hours = _total(counts, name, "seconds") / 3600
        units = _total(counts, name, "units") if name in counts else None
        uni = _total(unigram_counts, name, "units") if unigram_counts else None
        tot["h"] += hours
        tot["u"] += units or 0
        tot["g"] += uni or 0
        per_h = units / hours if units and hours else None
        p = paper.get(name.lower())
        ours = f"{name:<16}{hours:>10.3g}{_fmt(units):>10}{_fmt(uni):>10}{_fmt(per_h):>10}"
        theirs = (
            f"   | {p['dataset']:>14}{_fmt(p['hours']):>8}{_fmt(p['hubert_tokens']):>8}"
            f"{_fmt(p['unigram_tokens']):>8}{_fmt(p['hubert_tokens'] / p['hours']):>9}"
            if p
            else "   |"
        )
        lines.append(ours + theirs)
    lines.append(
        f"{'total':<16}{tot['h']:>10.3g}{_fmt(tot['u']):>10}"
        f"{_fmt(tot['g'] if unigram_counts else None):>10}"
    )
    return "\n".join(lines)


def format_accounting(n_inputs: int, n_rows: int, n_rejects: int) -> str:
    """The line every run prints; inputs = tokenized + rejected always holds."""
    ok = "" if n_inputs == n_rows + n_rejects else "  (MISMATCH: please report this bug)"
    return f"inputs {n_inputs} = tokenized {n_rows} + rejected {n_rejects}{ok}"
