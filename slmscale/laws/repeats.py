"""Seed repeats: one point (N, D, U_D, tokenizer) trained with several seeds.

The fit uses each point's mean loss (and mean downstream metrics), so a point counts once
however many seeds it has, and a bootstrap that resamples points keeps its seeds together.  The
spread between seeds is the measured noise of the study: per metric, per point min / max / std,
and a pooled figure (the within-point standard deviation pooled over every repeated point,
sqrt(sum (k_i - 1) s_i^2 / sum (k_i - 1))), of the loss itself and of its log (the noise model of
the fit and of the simulation check: a log-normal sigma).  Slamming (Maimon et al. 2025) reports
min / max over 3 seeds for every downstream number; so does fit.json's `seed_spread`.
"""

from __future__ import annotations

import numpy as np

from slmscale.laws.table import RunsTable


def point_groups(table: RunsTable) -> list[list[int]]:
    """Row indices per point (N, D, U_D, tokenizer), in table order."""
    groups: dict[tuple, list[int]] = {}
    for i in range(len(table)):
        key = (table.N[i], table.D[i], table.U[i], table.tokenizer[i])
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def _spread(values: np.ndarray, groups: list[list[int]], table: RunsTable) -> dict | None:
    points, dev, dev_log, dof = [], 0.0, 0.0, 0
    for g in groups:
        v = values[g]
        v = v[np.isfinite(v)]
        if v.size < 2:
            continue
        i = g[0]
        s = float(np.std(v, ddof=1))
        points.append(
            {
                "params": float(table.N[i]),
                "tokens": float(table.D[i]),
                "unique_tokens": float(table.U[i]),
                "n": int(v.size),
                "mean": float(v.mean()),
                "min": float(v.min()),
                "max": float(v.max()),
                "std": s,
            }
        )
        dev += (v.size - 1) * s * s
        if np.all(v > 0):
            dev_log += (v.size - 1) * float(np.var(np.log(v), ddof=1))
        dof += v.size - 1
    if not points:
        return None
    return {
        "points": points,
        "pooled_std": float(np.sqrt(dev / dof)),
        "pooled_std_log": float(np.sqrt(dev_log / dof)),
        "dof": dof,
    }


def seed_spread(table: RunsTable) -> dict | None:
    """fit.json's `seed_spread` (None when no point has two or more runs)."""
    groups = point_groups(table)
    if all(len(g) < 2 for g in groups):
        return None
    metrics = {"loss": _spread(table.loss, groups, table)}
    for m, v in sorted(table.metrics.items()):
        metrics[m] = _spread(v, groups, table)
    return {
        "n_points_repeated": sum(len(g) > 1 for g in groups),
        "n_runs": len(table),
        "metrics": {m: s for m, s in metrics.items() if s is not None},
        "how": "per point (N, D, U_D, tokenizer): runs with other seeds; pooled: within-point "
        "standard deviation pooled over the repeated points",
    }


def by_point(table: RunsTable) -> RunsTable:
    """One row per point: mean loss and metrics over its seeds (run ids kept in `members`)."""
    groups = point_groups(table)
    if all(len(g) == 1 for g in groups):
        return table
    first = [g[0] for g in groups]
    out = table.subset(first)

    def mean(v):
        with np.errstate(invalid="ignore"):
            return np.array(
                [np.nanmean(v[g]) if np.isfinite(v[g]).any() else np.nan for g in groups]
            )

    out.loss = mean(table.loss)
    out.metrics = {m: mean(v) for m, v in table.metrics.items()}
    out.members = [[table.run_id[i] for i in g] for g in groups]
    out.seed = [",".join(table.seed[i] for i in g) if table.seed else "" for g in groups]
    return out
