"""Envelopes (frontiers) against compute and their power laws y = k C^gamma.

Figure 1: the envelope of *minimal* test loss per FLOP over every eval point of every
single-epoch run; Figure 2: the envelope of *maximal* downstream metric per FLOP over runs.
A point is on the frontier when no point with at most its compute does better (a running
minimum / maximum in order of compute; ties in compute keep the best value only).  The power law
is a least-squares line in log-log space, log y = log k + gamma log C.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PowerLaw:
    """y = k C^gamma."""

    k: float
    gamma: float
    r2_log: float  # R^2 of the log-log line
    n_points: int

    def __call__(self, C):
        return self.k * np.asarray(C, float) ** self.gamma

    def inverse(self, y):
        """The C at which the law reaches y."""
        return (np.asarray(y, float) / self.k) ** (1.0 / self.gamma)

    def as_dict(self) -> dict[str, float]:
        return {"k": self.k, "gamma": self.gamma, "r2_log": self.r2_log, "n_points": self.n_points}


def frontier_mask(C, y, present, *, maximize: bool = False) -> np.ndarray:
    """(B, n) frontier membership of points sorted by (C, best value first), per row of
    `present` (B, n): a point is on it when it is present and beats every present point of
    lower or equal compute (a running minimum / maximum; ties in compute keep the best)."""
    sign = -1.0 if maximize else 1.0
    v = np.where(present, sign * np.asarray(y, float)[None, :], np.inf)
    prev = np.concatenate(
        [np.full((v.shape[0], 1), np.inf), np.minimum.accumulate(v, axis=1)[:, :-1]], axis=1
    )
    return present & (v < prev)


def frontier(C, y, *, maximize: bool = False) -> np.ndarray:
    """Indices of the frontier points (minimal y per compute, or maximal), in order of C.

    Points with non-finite or non-positive C, or non-finite y, are ignored.
    """
    C, y = np.asarray(C, float), np.asarray(y, float)
    ok = np.flatnonzero(np.isfinite(C) & (C > 0) & np.isfinite(y))
    sign = -1.0 if maximize else 1.0
    order = ok[np.lexsort((sign * y[ok], C[ok]))]
    mask = frontier_mask(C[order], y[order], np.ones((1, order.size), bool), maximize=maximize)
    return order[mask[0]].astype(int)


def fit_power_law(C, y) -> PowerLaw:
    """Least squares of log y on log C.  Needs at least two distinct positive C and positive y."""
    C, y = np.asarray(C, float), np.asarray(y, float)
    ok = (C > 0) & (y > 0) & np.isfinite(C) & np.isfinite(y)
    x, v = np.log(C[ok]), np.log(y[ok])
    if x.size < 2 or np.ptp(x) == 0:
        raise ValueError("a power law needs at least two points at different compute")
    gamma, logk = np.polyfit(x, v, 1)
    resid = v - (logk + gamma * x)
    ss_tot = float(np.sum((v - v.mean()) ** 2))
    r2 = float(1 - np.sum(resid**2) / ss_tot) if ss_tot > 0 else 1.0
    return PowerLaw(float(np.exp(logk)), float(gamma), r2, int(x.size))


def envelope_law(C, y, *, maximize: bool = False) -> tuple[np.ndarray, PowerLaw | None]:
    """Frontier indices and the power law through them (None with fewer than 2 points)."""
    idx = frontier(C, y, maximize=maximize)
    C, y = np.asarray(C, float), np.asarray(y, float)
    try:
        return idx, fit_power_law(C[idx], y[idx])
    except ValueError:
        return idx, None


def envelope_gammas(C, y, groups, weights, *, maximize: bool = False) -> np.ndarray:
    """The envelope's power-law exponent once per bootstrap replicate, vectorised.

    `groups` (n,) are integer indices of the resampling unit of each point (a run: all its
    eval points go together), `weights` (B, n_groups) draw counts; a replicate's envelope is
    the frontier of the points of the runs it drew (a run drawn twice adds no new point).
    Returns (B,) exponents (NaN where fewer than two frontier points remain).
    """
    C, y = np.asarray(C, float), np.asarray(y, float)
    groups = np.asarray(groups, int)
    ok = np.isfinite(C) & (C > 0) & np.isfinite(y) & (y > 0)
    C, y, groups = C[ok], y[ok], groups[ok]
    sign = -1.0 if maximize else 1.0
    order = np.lexsort((sign * y, C))
    C, y, groups = C[order], y[order], groups[order]
    w = np.atleast_2d(np.asarray(weights, float))
    f = frontier_mask(C, y, w[:, groups] > 0, maximize=maximize).astype(float)
    x, z = np.log(C)[None, :], np.log(y)[None, :]
    n = f.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mx = (f * x).sum(axis=1) / n
        mz = (f * z).sum(axis=1) / n
        sxx = (f * (x - mx[:, None]) ** 2).sum(axis=1)
        sxz = (f * (x - mx[:, None]) * (z - mz[:, None])).sum(axis=1)
        return np.where((n >= 2) & (sxx > 0), sxz / sxx, np.nan)
