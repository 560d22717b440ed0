"""Is a benchmark above chance?  A binomial test on its item count, not a fixed margin.

A benchmark of n two-way items scored by many runs: even at chance, the best of them beats 0.5
by luck (the best of 125 runs on 200 pairs reaches ~0.59).  So the best run's correct count k =
round(best_acc x n_items) is tested against Binomial(n_items, chance), p_best = P(X >= k), and
corrected for having picked the best of n_runs (Sidak: p = 1 - (1 - p_best)^n_runs; the runs
are positively correlated, so this errs towards "at chance").  The benchmark is at chance when
p >= `ALPHA` (0.05): then it gets no exponent, no envelope law, no loss-to-metric line and no
"ahead" claim.  Without an item count (a runs table without `<metric>_n_items`, no `--items`)
the old rule stands in, said so: at chance unless the best run beats chance by `MARGIN`.
"""

from __future__ import annotations

import numpy as np

ALPHA = 0.05
MARGIN = 0.02


def chance_test(y, chance: float, n_items: float | None, *, alpha: float = ALPHA) -> dict:
    """fit.json's `chance_test`: best_acc, n_items, n_runs, p_value, alpha, at_chance, method."""
    from scipy.special import betainc  # not scipy.stats: its import alone takes seconds

    y = np.asarray(y, float)
    y = y[np.isfinite(y)]
    out = {"best_acc": None, "n_items": n_items, "n_runs": int(y.size), "p_value": None}
    out["alpha"] = alpha
    if y.size == 0:
        return {**out, "at_chance": True, "method": "no scores"}
    best = float(y.max())
    out["best_acc"] = best
    if not n_items or not np.isfinite(n_items) or n_items < 1:
        flat = best < chance + MARGIN
        how = f"item count unknown: best run within {MARGIN:g} of chance"
        return {**out, "n_items": None, "at_chance": bool(flat), "method": how}
    n = int(round(n_items))
    k = int(round(best * n))
    # P(X >= k) for X ~ Binomial(n, chance) = I_chance(k, n - k + 1), the regularised beta
    p_best = 1.0 if k <= 0 else 0.0 if k > n else float(betainc(k, n - k + 1, chance))
    p = float(1.0 - (1.0 - p_best) ** y.size)
    how = (
        f"binomial: best of {y.size} runs, {k}/{n} items against chance {chance:g}, "
        "Sidak-corrected for the choice of the best"
    )
    return {**out, "n_items": n, "p_value": p, "at_chance": bool(p >= alpha), "method": how}


def items_of(n_items_column, default: float | None = None) -> float | None:
    """The item count of a benchmark from its per-run column (the largest finite value, since
    every run scores the same items), else `default`."""
    if n_items_column is not None:
        v = np.asarray(n_items_column, float)
        v = v[np.isfinite(v) & (v > 0)]
        if v.size:
            return float(v.max())
    return default
