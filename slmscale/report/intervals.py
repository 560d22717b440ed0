"""Intervals the report shows that fit.json keeps as samples rather than as `ci95` entries.

Figure 4's slopes: fit.json keeps the bootstrap's refitted (slope, intercept) of each metric's
loss-to-metric line (`bootstrap.linear[m]`, the same replicates as every other interval).  When
the laws give the slope's interval in `ci95` (`linear_slope.m`) it is used as is; otherwise it
is read off those samples with the laws' own interval function (bias-corrected, widened for the
line's 2 constants), so the report adds no method of its own.
"""

from __future__ import annotations

SLOPE_KEYS = ("linear_slope.{m}", "slope.{m}")


def slope_interval(doc: dict, metric: str) -> list[float] | None:
    """95% interval of the slope of `metric` against test loss (None without a bootstrap)."""
    ci95 = doc.get("ci95") or {}
    for key in SLOPE_KEYS:
        ci = ci95.get(key.format(m=metric))
        if ci and ci[0] is not None:
            return ci
    samples = ((doc.get("bootstrap") or {}).get("linear") or {}).get(metric)
    linear = ((doc.get("downstream") or {}).get(metric) or {}).get("linear")
    if not samples or not linear:
        return None
    from slmscale.laws.gamma import interval

    slopes = [s[0] for s in samples if s and s[0] is not None]
    ci = interval(slopes, linear["slope"], (linear["n_points"], 2))
    return ci if ci[0] is not None else None
