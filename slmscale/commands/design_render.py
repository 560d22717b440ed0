"""`slmscale design`: the design as text (the JSON is the same document, `--json`)."""

from __future__ import annotations

import math


def _g(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.{digits}g}"


def _pct(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "inf" if v is not None else "-"
    return f"{100 * v:+.1f}%"


def _table(head, rows) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, strict=True)]
    fmt = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return [fmt(head), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


def render(design: dict) -> str:
    full = design["grids"][0]
    unit = design["cost_unit"]
    lines = [
        f"design of grid {design['spec_name']}: {full['n_runs']} runs, {_g(full['cost'], 4)} "
        f"{unit}; prior {design['prior']['source']}; noise {100 * design['prior']['noise']:.2g}%; "
        f"{design['sims']} simulated studies, seed {design['seed']}",
        *(f"  note: {n}" for n in design["prior"]["notes"]),
        "",
    ]
    head = [
        "constant",
        "prior",
        "95% interval of refits",
        "width",
        "hi / lo",
        "on edge",
        "identified",
    ]
    rows = []
    for k, c in full["constants"].items():
        iv = c["interval"]
        rows.append(
            [
                k,
                _g(c["center"]),
                f"[{_g(iv[0])}, {_g(iv[1])}]" if iv else c.get("reason", "-"),
                _g(c["width"]),
                _g(c["factor"]),
                "-" if c["at_bounds"] is None else f"{100 * c['at_bounds']:.0f}%",
                "yes" if c["identified"] else "NO",
            ]
        )
    lines += _table(head, rows)
    ex = full["extrapolation"]
    iv = ex.get("interval")
    lines += [
        "",
        f"identified: {design['rule']}",
        f"extrapolated compute-optimal loss at C = {ex['target_flops']:.3g} FLOPs: 95% of refits "
        f"within [{_pct(iv and iv[0])}, {_pct(iv and iv[1])}] of the true loss "
        f"(width {_g(100 * ex['width'] if ex['width'] is not None else None)} points, median "
        f"|error| {_pct(ex.get('median_abs'))[1:]}), for {_g(full['cost'], 4)} {unit}",
    ]
    if ex.get("r2_range"):
        lo, hi = ex["r2_range"]
        lines.append(
            f"R^2 of the refits: {lo:.3f}-{hi:.3f} (95% range): high whether or not the "
            "constants are pinned down"
        )
    if full["note"]:
        lines.append(f"note: {full['note']}")
    if len(design["grids"]) > 1:
        lines += [
            "",
            "leaner grids: cost saved vs 95% interval widened (width / the full grid's; for E, A, "
            "B, R* the width of log(hi / lo))",
        ]
        keys = list(full["constants"])
        kept = {k for k, c in full["constants"].items() if c["identified"]}
        head = ["variant", "runs", unit, "saved", *keys, "extrap.", "identified", "keeps full's"]
        rows = []
        for g in design["grids"]:
            ratios = []
            for k in keys:
                w0, w = full["constants"][k]["spread"], g["constants"][k]["spread"]
                ok = w0 and w is not None and math.isfinite(w0)
                ratios.append(f"{w / w0:.2f}x" if ok else "-")
            e0, e = full["extrapolation"]["width"], g["extrapolation"]["width"]
            rows.append(
                [
                    g["name"],
                    str(g["n_runs"]),
                    _g(g["cost"], 4),
                    f"{100 * (1 - g['cost'] / full['cost']):.0f}%" if full["cost"] else "-",
                    *ratios,
                    "-" if not e0 or e is None or not math.isfinite(e0) else f"{e / e0:.2f}x",
                    f"{sum(c['identified'] for c in g['constants'].values())}/{len(keys)}",
                    "yes"
                    if kept <= {k for k, c in g["constants"].items() if c["identified"]}
                    else "no",
                ]
            )
        lines += _table(head, rows)
        cheap, keep = design.get("cheapest_identified"), design.get("cheapest_keeping")
        lines.append(
            f"cheapest grid that identifies every constant: {cheap}"
            if cheap
            else "no grid here identifies every constant (not even the full grid)"
        )
        if keep and not cheap:
            g = next(g for g in design["grids"] if g["name"] == keep)
            lines.append(
                f"cheapest grid that keeps every constant the full grid identifies "
                f"({', '.join(sorted(kept)) or 'none'}): {keep}, {_g(g['cost'], 4)} {unit}"
            )
    lines += _schedule_lines(design.get("schedules"))
    nxt = design.get("next_runs")
    if nxt:
        lines += ["", f"next runs ({nxt['basis']}):"]
        if not nxt["chosen"]:
            lines.append(f"  none narrows the extrapolation interval ({nxt.get('why', '')})")
        head = ["#", "run", "trial_key", unit, "extrap. width before -> after", f"gain per {unit}"]
        rows = [
            [
                str(i + 1),
                c["label"],
                c["key"][:16],
                _g(c["cost"], 4),
                f"{100 * c['width_before']:.2f} -> {100 * c['width_after']:.2f} points",
                _g(100 * c["gain_per_cost"]),
            ]
            for i, c in enumerate(nxt["chosen"])
        ]
        if rows:
            lines += ["  " + r for r in _table(head, rows)]
        if nxt.get("spec_written"):
            lines.append(
                f"  wrote {nxt['spec_written']}: `slmscale grid {nxt['spec_written']}` runs exactly these"
            )
    return "\n".join(lines)


def _schedule_lines(sched: dict | None) -> list[str]:
    """The full grid's price under both schedules (the spec trains the one it names)."""
    if not sched:
        return []

    def price(kind: str) -> str:
        hours = sched[f"{kind}_gpu_hours"]
        gpu = f"{hours:,.1f} GPU-h, " if hours is not None else ""
        return f"{gpu}{sched[f'{kind}_flops']:.3g} FLOPs"

    mark = {sched["spec_schedule"]: " (the spec's)"}
    return [
        "",
        "the full grid under each schedule (the simulated studies assume WSD branches end where "
        "cosine runs of their budgets would; docs/grid.md):",
        f"  cosine, a run per point{mark.get('cosine', '')}: {price('cosine')}",
        f"  wsd, {sched['cooldown']} cooldowns on {sched['trunks']} trunks"
        f"{mark.get('wsd', '')}: {price('wsd')}, {sched['wsd_saves']:.0%} less",
    ]
