"""Downstream metrics against test loss (Figure 4): linear before saturation, bounded for prediction.

The paper reports that syntactic and semantic metrics are linear in the upstream test loss
"before saturation".  How we pick the unsaturated range: runs sorted by loss, the lowest-loss
ones may form a plateau, chosen by the house's pre-saturation rule (`plateau.line_then_plateau`:
line + plateau against one line, by BIC).  Pearson r is computed over the unsaturated range only.

Predictions (`slmscale plan`) must stay inside [chance, 1]: a straight line in the loss leaves
them (it predicted sWUGGY 1.034 at 1e21 FLOPs).  So a prediction uses a bounded link over the
same unsaturated runs: logit((acc - chance) / (1 - chance)) linear in the loss (least squares,
accuracies clipped half an item inside the bounds), whose inverse never leaves (chance, 1).  A
loss below the fitted range reads the plateau when the runs showed one; its interval is the
bootstrap spread of the plateau's mean over replicates, widened to the plateau runs' own range,
never a zero-width interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slmscale.laws.plateau import line_then_plateau

EPS = 1e-3  # how far inside (chance, 1) accuracies are clipped for the logit (no item count)


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
    chance: float = 0.5
    link_slope: float | None = (
        None  # logit((acc - chance) / (1 - chance)) = link_slope * loss + ...
    )
    link_intercept: float | None = None
    plateau_range: tuple[float, float] | None = None  # min, max of the saturated runs
    resid_sd: float | None = None  # residual sd of the line: one run's scatter about it

    def __call__(self, loss):
        return self.slope * np.asarray(loss, float) + self.intercept

    def bounded(self, loss):
        """The prediction through the bounded link, inside (chance, 1)."""
        return link_inverse(self.link_slope, self.link_intercept, loss, self.chance)

    def loss_for(self, metric: float) -> float:
        """The loss at which the bounded link reaches `metric` (the line where it has none)."""
        if self.link_slope:
            q = (metric - self.chance) / (1.0 - self.chance)
            if not 0.0 < q < 1.0:
                return float("nan")
            return (np.log(q / (1.0 - q)) - self.link_intercept) / self.link_slope
        return (metric - self.intercept) / self.slope

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["plateau_range"] = list(self.plateau_range) if self.plateau_range else None
        return d


def link_inverse(slope, intercept, loss, chance: float):
    """chance + (1 - chance) sigmoid(slope * loss + intercept), elementwise, in (chance, 1)."""
    z = np.asarray(slope, float) * np.asarray(loss, float) + np.asarray(intercept, float)
    with np.errstate(over="ignore"):
        return chance + (1.0 - chance) / (1.0 + np.exp(-z))


def _logit(y, chance: float):
    q = np.clip((np.asarray(y, float) - chance) / (1.0 - chance), EPS, 1.0 - EPS)
    return np.log(q / (1.0 - q))


def _weighted_line(x, y, w):
    """(B,) slope, intercept of weighted least squares of y on x, one row per weight row."""
    with np.errstate(divide="ignore", invalid="ignore"):
        n = w.sum(axis=1)
        mx, my = (w * x).sum(axis=1) / n, (w * y).sum(axis=1) / n
        sxx = (w * (x - mx[:, None]) ** 2).sum(axis=1)
        sxy = (w * (x - mx[:, None]) * (y - my[:, None])).sum(axis=1)
        slope = np.where(sxx > 0, sxy / sxx, np.nan)
    return slope, my - slope * mx


def fit_linear_relation(loss, metric, chance: float = 0.5) -> LinearRelation | None:
    """The linear loss-to-metric relation over the unsaturated range (None: < 3 usable runs)."""
    loss, metric = np.asarray(loss, float), np.asarray(metric, float)
    ok = np.isfinite(loss) & np.isfinite(metric)
    order = np.argsort(-loss[ok], kind="stable")  # highest loss first: the plateau comes last
    x, y = loss[ok][order], metric[ok][order]
    n = x.size
    if n < 3 or np.ptp(x) == 0:
        return None
    _, _, n_line, n_plat = line_then_plateau(-x, y[None, :], np.ones((1, n), bool))
    k = int(n_plat[0]) if n_line[0] else 0
    xs, ys = x[: n - k], y[: n - k]
    slope, icpt = np.polyfit(xs, ys, 1)
    r = float(np.corrcoef(xs, ys)[0, 1]) if np.ptp(ys) > 0 else float("nan")
    resid = ys - (slope * xs + icpt)
    sd = float(np.sqrt(np.sum(resid**2) / max(xs.size - 2, 1)))
    ls, li = _weighted_line(xs[None, :], _logit(ys, chance)[None, :], np.ones((1, xs.size)))
    return LinearRelation(
        slope=float(slope),
        intercept=float(icpt),
        pearson_r=r,
        loss_min=float(xs.min()),
        loss_max=float(xs.max()),
        n_points=int(xs.size),
        n_saturated=k,
        plateau=float(y[n - k :].mean()) if k else None,
        chance=float(chance),
        link_slope=float(ls[0]),
        link_intercept=float(li[0]),
        plateau_range=(float(y[n - k :].min()), float(y[n - k :].max())) if k else None,
        resid_sd=sd,
    )


def _unsaturated(loss, metric, rel: LinearRelation):
    loss, metric = np.asarray(loss, float), np.asarray(metric, float)
    return loss, metric, np.isfinite(loss) & np.isfinite(metric) & (loss >= rel.loss_min)


def linear_samples(loss, metric, rel: LinearRelation, weights) -> np.ndarray:
    """(B, 2) slope, intercept of the line refitted per bootstrap replicate (vectorised).

    Each replicate weights the runs by their draw counts (`weights` (B, runs)) and fits the
    line over the same unsaturated range as `rel` (loss >= rel.loss_min); the break itself is
    not re-chosen per replicate.
    """
    loss, metric, use = _unsaturated(loss, metric, rel)
    w = np.atleast_2d(np.asarray(weights, float))[:, use]
    slope, icpt = _weighted_line(loss[use][None, :], metric[use][None, :], w)
    return np.stack([slope, icpt], axis=1)


def link_samples(loss, metric, rel: LinearRelation, weights):
    """((B, 2) link slope, intercept; (B,) plateau mean or None) per bootstrap replicate."""
    loss, metric, use = _unsaturated(loss, metric, rel)
    w = np.atleast_2d(np.asarray(weights, float))
    z = _logit(metric[use], rel.chance)[None, :]
    slope, icpt = _weighted_line(loss[use][None, :], z, w[:, use])
    plat = None
    if rel.plateau is not None:
        sat = np.isfinite(loss) & np.isfinite(metric) & (loss < rel.loss_min)
        ws = w[:, sat]
        with np.errstate(invalid="ignore", divide="ignore"):
            plat = (ws * metric[sat][None, :]).sum(axis=1) / ws.sum(axis=1)
    return np.stack([slope, icpt], axis=1), plat
