"""`slmscale fit`'s text summary: each number with its interval and verdict, then what was left out.

A value on the search-box edge is printed as a bound (`>= 1e+04 (edge)`), never as a plain
number; every excluded run and outlier is listed with its reason (grouped by reason past 12).
"""

from __future__ import annotations


def print_summary(doc: dict) -> None:
    print(f"law {doc['law']}: {doc['n_points']} points, objective {doc['objective']:.6g}")
    print(f"  compute: {doc.get('flops_definition', '6nd')}")
    verdicts = doc.get("verdicts") or {}
    co = doc["compute_optimal"]
    values = {**doc["params"], **{k: co[k] for k in ("G", "a", "b")}}
    for k, v in values.items():
        print("  " + verdict_line(k, v, verdicts.get(k), (doc.get("ci95") or {}).get(k)))
    print(f"  N_opt = {co['G']:.4g} (C/6)^{co['a']:.4f}, D_opt = (C/6)^{co['b']:.4f} / G")
    flagged = doc.get("not_identified") or []
    if flagged:
        print(f"  not identified: {', '.join(flagged)}")
        print(f"  rule: {doc.get('identification_rule')}")
    for m, d in sorted((doc.get("downstream") or {}).items()):
        if d.get("at_chance"):
            t = d.get("chance_test") or {}
            best, p = _num(t.get("best_acc")), _num(t.get("p_value"))
            print(f"  {m}: at chance (best {best}, p = {p}): no exponent")
    _print_runs("outlier", doc.get("outliers") or [])
    _print_runs("excluded", doc["excluded"])


def verdict_line(k: str, v, verdict: dict | None, ci) -> str:
    """`name  value  95% [lo, hi]  verdict`; a value on the search-box edge is a bound."""
    edge = (verdict or {}).get("edge")
    text = (
        f"{v:<12.6g}"
        if edge is None
        else f"{('>= ' if edge == 'hi' else '<= ') + f'{v:.4g} (edge)':<12s}"
    )
    iv = (verdict or {}).get("interval") or ci or [None, None]
    ends = (verdict or {}).get("interval_edge") or ""
    lo = _num(iv[0]) + (" (edge)" if ends in ("lo", "both") else "")
    hi = _num(iv[1]) + (" (edge)" if ends in ("hi", "both") else "")
    rng = f"  95% [{lo}, {hi}]" if iv[0] is not None or iv[1] is not None else ""
    mark = ""
    if verdict is not None:
        mark = (
            "  identified"
            if verdict["identified"]
            else f"  NOT IDENTIFIED ({verdict['reason'].removeprefix('not identified: ')})"
        )
    return f"{k:9s} {text}{rng}{mark}"


def _print_runs(what: str, rows: list[dict], limit: int = 12) -> None:
    """Each run with its reason; past `limit`, one line per reason with its count."""
    if not rows:
        print(f"  {what} runs: none")
        return
    print(f"  {what} runs: {len(rows)}")
    if len(rows) <= limit:
        for e in rows:
            print(f"    {e['run_id']}: {e['reason']}")
        return
    by: dict[str, list[str]] = {}
    for e in rows:
        by.setdefault(e["reason"], []).append(e["run_id"])
    for reason, ids in sorted(by.items(), key=lambda kv: -len(kv[1])):
        more = f" ... (+{len(ids) - 3})" if len(ids) > 3 else ""
        print(f"    {len(ids)} x {reason}: {', '.join(ids[:3])}{more}")


def _num(v) -> str:
    return "-" if v is None else f"{v:.4g}"
