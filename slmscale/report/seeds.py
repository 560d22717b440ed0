"""The seed spread of the runs (fit.json `seed_spread`): how noisy the study's own runs are.

When a grid repeats points with other seeds, the laws give, per metric (the test loss and each
downstream accuracy) and per repeated point, the runs' min, max and standard deviation, and a
pooled noise figure.  The report prints them beside the point's mean, so a reader sees how far
apart two runs of one configuration land before comparing any two numbers.  Rendered as the
laws wrote it; older fit.json files have no `seed_spread`, and the report says so.
"""

from __future__ import annotations

import numpy as np

from slmscale.report.numbers import num


def _point_name(p: dict) -> str:
    parts = []
    if p.get("model_size"):
        parts.append(str(p["model_size"]))
    elif p.get("params") is not None:
        parts.append(f"N {num(p['params'], 3)}")
    if p.get("tokens") is not None:
        parts.append(f"D {num(p['tokens'], 3)}")
    u = p.get("unique_tokens")
    if u is not None and p.get("tokens") is not None and u < p["tokens"] * (1 - 1e-9):
        parts.append(f"U {num(u, 3)}")
    return ", ".join(parts) or "-"


def _estimate(table, metric: str, p: dict):
    """The point's mean over its seeds (what the fit uses), from the runs table."""
    if table is None or p.get("params") is None or p.get("tokens") is None:
        return p.get("mean")
    y = table.loss if metric == "loss" else table.metrics.get(metric)
    if y is None:
        return p.get("mean")
    at = np.isclose(table.N, p["params"], rtol=1e-6) & np.isclose(table.D, p["tokens"], rtol=1e-6)
    if p.get("unique_tokens") is not None:
        at &= np.isclose(table.U, min(p["unique_tokens"], p["tokens"]), rtol=1e-6)
    vals = y[at]
    vals = vals[np.isfinite(vals)]
    return float(vals.mean()) if vals.size else p.get("mean")


def _pooled(entry: dict) -> str:
    parts = []
    if entry.get("pooled_std") is not None:
        parts.append(f"std {num(entry['pooled_std'], 3)}")
    if entry.get("pooled_std_log") is not None:
        parts.append(f"std of log {num(entry['pooled_std_log'], 3)}")
    return ", ".join(parts) or "-"


def seed_blocks(doc: dict, table=None) -> list:
    """Heading, note and table of the seed spread (a sentence when there are no repeats).

    `table`: the study's runs table, for each repeated point's mean (the estimate)."""
    spread = doc.get("seed_spread")
    head = ("h2", "Seed spread: the noise of these runs, measured")
    metrics = (spread or {}).get("metrics") if isinstance(spread, dict) else None
    if not metrics:
        return [
            head,
            (
                "p",
                "No point of these runs was repeated with another seed, so the run-to-run noise "
                "is not measured here; intervals and identification assume the residual noise "
                "of the fit. A grid spec's `seeds:` repeats points (each repeat its own run).",
            ),
        ]
    rows = []
    for metric, entry in metrics.items():
        for p in entry.get("points") or []:
            rows.append(
                [
                    metric,
                    _point_name(p),
                    str(p.get("n", "-")),
                    num(_estimate(table, metric, p), 4),
                    f"{num(p.get('min'), 4)} - {num(p.get('max'), 4)}",
                    num(p.get("std"), 3),
                ]
            )
        rows.append([metric, "pooled over repeated points", "-", "-", "-", _pooled(entry)])
    note = (
        f"{spread.get('n_points_repeated', 'Some')} point(s) were trained with several seeds. "
        "For the test loss and every downstream metric: each repeated point's mean over its "
        "seeds (the estimate the fit uses), the runs' range and standard deviation, and the "
        "noise pooled over the repeated points (the simulation check's noise)."
    )
    head_row = ["metric", "point", "seeds", "estimate (mean)", "min - max", "std"]
    return [head, ("p", note), ("table", head_row, rows)]
