"""Downstream metrics against test loss (Figure 4): linear before saturation.

The paper reports that syntactic and semantic metrics are linear in the upstream test loss
"before saturation".  How we pick the unsaturated range: sort runs by loss; for every split
that leaves the k lowest-loss runs as a plateau (k = 0 .. n-3), fit a line to the rest and a
constant to the plateau; keep the split with the lowest BIC, n log(SSE/n) + p log n, where the
plain line has p = 2 and a line plus plateau has p = 4 (slope, intercept, plateau, break).  So a
plateau is only declared when it explains the data clearly better than one line.  Pearson r is
computed over the unsaturated range only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LinearRelation:
    """metric = slope * loss + intercept, valid for loss in [loss_min, loss_max]."""

    slope: float
    intercept: float
    pearson_r: float
    loss_min: float
    loss_max: float
    n_points: int
    n_saturated: int
    plateau: float | None  # mean metric over the saturated runs, if any

    def __call__(self, loss):
        return self.slope * np.asarray(loss, float) + self.intercept

    def loss_for(self, metric: float) -> float:
        """The loss at which the line reaches `metric`."""
        return (metric - self.intercept) / self.slope

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _sse_line(x: np.ndarray, y: np.ndarray) -> float:
    slope, icpt = np.polyfit(x, y, 1)
    return float(np.sum((y - (slope * x + icpt)) ** 2))


def _bic(sse: float, n: int, p: int) -> float:
    return n * np.log(max(sse, 1e-300) / n) + p * np.log(n)


def fit_linear_relation(loss, metric) -> LinearRelation | None:
    """The linear loss-to-metric relation over the unsaturated range (None: < 3 usable runs)."""
    loss, metric = np.asarray(loss, float), np.asarray(metric, float)
    ok = np.isfinite(loss) & np.isfinite(metric)
    order = np.argsort(loss[ok], kind="stable")
    x, y = loss[ok][order], metric[ok][order]
    n = x.size
    if n < 3 or np.ptp(x) == 0:
        return None
    best_k, best_bic = 0, _bic(_sse_line(x, y), n, 2)
    for k in range(1, n - 2):
        if np.ptp(x[k:]) == 0:
            break
        sse = _sse_line(x[k:], y[k:]) + float(np.sum((y[:k] - y[:k].mean()) ** 2))
        bic = _bic(sse, n, 4)
        if bic < best_bic - 1e-9:
            best_k, best_bic = k, bic
    xs, ys = x[best_k:], y[best_k:]
    slope, icpt = np.polyfit(xs, ys, 1)
    r = float(np.corrcoef(xs, ys)[0, 1]) if np.ptp(ys) > 0 else float("nan")
    return LinearRelation(
        slope=float(slope),
        intercept=float(icpt),
        pearson_r=r,
        loss_min=float(xs[0]),
        loss_max=float(xs[-1]),
        n_points=int(xs.size),
        n_saturated=int(best_k),
        plateau=float(y[:best_k].mean()) if best_k else None,
    )


def linear_samples(loss, metric, rel: LinearRelation, weights) -> np.ndarray:
    """(B, 2) slope, intercept of the relation refitted per bootstrap replicate (vectorised).

    Each replicate weights the runs by their draw counts (`weights` (B, runs)) and fits the
    line over the same unsaturated range as `rel` (loss >= rel.loss_min); the break itself is
    not re-chosen per replicate.
    """
    loss, metric = np.asarray(loss, float), np.asarray(metric, float)
    use = np.isfinite(loss) & np.isfinite(metric) & (loss >= rel.loss_min)
    x, y = loss[use][None, :], metric[use][None, :]
    w = np.atleast_2d(np.asarray(weights, float))[:, use]
    with np.errstate(divide="ignore", invalid="ignore"):
        n = w.sum(axis=1)
        mx, my = (w * x).sum(axis=1) / n, (w * y).sum(axis=1) / n
        sxx = (w * (x - mx[:, None]) ** 2).sum(axis=1)
        sxy = (w * (x - mx[:, None]) * (y - my[:, None])).sum(axis=1)
        slope = np.where(sxx > 0, sxy / sxx, np.nan)
    return np.stack([slope, my - slope * mx], axis=1)
