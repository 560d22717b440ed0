"""Eq. 7/8 (Muennighoff et al. 2023): multi-epoch runs through effective data and parameters.

    D' = U_D + U_D R*_D (1 - exp(-R_D / R*_D)),   R_D = D / U_D - 1
    N' = U_N + U_N R*_N (1 - exp(-R_N / R*_N)),   R_N = N / U_N - 1
    L_hat = E + A / N'^alpha + B / D'^beta                                         (Eq. 7)

U_N is the compute-optimal size for U_D unique tokens (Eq. 6), capped at N as in Muennighoff
(so a model smaller than U_N has no excess parameters); R_D and R_N are floored at 0.  E, A, B,
alpha, beta are frozen at the Eq. 4 fit and only R*_N, R*_D are fitted, on log R* (they are
positive), with the same Huber-on-log-residuals objective.

The objective is a flat ridge in (R*_N, R*_D): very different pairs fit about equally well.  So
the fit scores a dense log grid (the *profile surface*, kept for the report), polishes the best
cells with the house's R* optimizer (`rstarfit`, the one the bootstrap and the design use), and
gives profile-likelihood intervals (for the figure only; fit.json's `ci95` comes from the
bootstrap, `intervals.py`): treating sum(Huber) as half a sum of squares
(residuals are mostly inside delta), the deviance 2 (obj - obj_min) / sigma^2 with
sigma^2 = 2 obj_min / (n - 2) is compared with chi2_1(0.95) = 3.84 along each parameter's
profile (the other parameter minimised out).  An interval that reaches the grid edge is reported
as unbounded on that side (None).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slmscale.laws.chinchilla import ChinchillaParams, huber
from slmscale.laws.compute_optimal import ComputeOptimal
from slmscale.laws.rstarfit import fit_rstar_batch

CHI2_1_95 = 3.841458820694124
LOG10_RSTAR_RANGE = (-1.0, 4.0)  # R* from 0.1 to 10,000 (the paper's are 5 to 31)


@dataclass
class DataConstrainedFit:
    R_star_N: float
    R_star_D: float
    objective: float
    n_points: int
    ci95: dict[str, list[float | None]]
    grid_log10: np.ndarray  # (G,) log10 R* values of both axes
    surface: np.ndarray  # (G_N, G_D) objective over the grid


def effective_data(D, U_D, R_star_D):
    """D' of Eq. 8 (U_D capped at D, R_D floored at 0)."""
    D = np.asarray(D, float)
    U_D = np.minimum(np.asarray(U_D, float), D)
    R_D = np.maximum(D / U_D - 1.0, 0.0)
    R_star_D = np.asarray(R_star_D, float)
    return U_D + U_D * R_star_D * (1.0 - np.exp(-R_D / R_star_D))


def effective_params(N, U_D, R_star_N, law: ChinchillaParams):
    """N' of Eq. 8, with U_N = min(N_opt(U_D), N) from Eq. 6."""
    N = np.asarray(N, float)
    U_N = np.minimum(ComputeOptimal.from_params(law).u_n(np.asarray(U_D, float)), N)
    R_N = np.maximum(N / U_N - 1.0, 0.0)
    R_star_N = np.asarray(R_star_N, float)
    return U_N + U_N * R_star_N * (1.0 - np.exp(-R_N / R_star_N))


def predict(law: ChinchillaParams, N, D, U_D, R_star_N: float, R_star_D: float) -> np.ndarray:
    """L_hat of Eq. 7."""
    Np = effective_params(N, U_D, R_star_N, law)
    Dp = effective_data(D, U_D, R_star_D)
    return law.predict(Np, Dp)


def predict_rows(P, N, D, U_D) -> np.ndarray:
    """Eq. 7/8 for each row of P (S, 7: E, A, B, alpha, beta, R*_N, R*_D), vectorised.

    N, D, U_D broadcast against (S, M); U_N = min(N_opt(U_D), N) from each row's Eq. 6 (as
    `effective_params`).  A row with R* NaN gives NaN (callers fall back to Eq. 4).
    """
    P = np.atleast_2d(np.asarray(P, float))
    E, A, B, al, be, rn, rd = (P[:, i : i + 1] for i in range(7))
    N, D, U_D = (np.asarray(x, float) for x in (N, D, U_D))
    with np.errstate(divide="ignore", over="ignore", invalid="ignore", under="ignore"):
        s = al + be
        G = (al * A / (be * B)) ** (1.0 / s)
        U = np.minimum(U_D, D)
        R_D = np.maximum(D / U - 1.0, 0.0)
        U_N = np.minimum(G * ((G * U) ** (1.0 / (al / s))) ** (be / s), N)
        R_N = np.maximum(N / U_N - 1.0, 0.0)
        Dp = U + U * rd * (1.0 - np.exp(-R_D / rd))
        Np = U_N + U_N * rn * (1.0 - np.exp(-R_N / rn))
        return E + A / Np**al + B / Dp**be


def _surface(law, N, D, U_D, L, w, delta, log10_rn, log10_rd) -> np.ndarray:
    """Objective for every (R*_N, R*_D) pair of the two grids: (len(rn), len(rd))."""
    Np = effective_params(N[None, :], U_D[None, :], 10.0 ** log10_rn[:, None], law)  # (GN, P)
    Dp = effective_data(D[None, :], U_D[None, :], 10.0 ** log10_rd[:, None])  # (GD, P)
    logL = np.log(L)
    termN = law.A / Np**law.alpha
    termD = law.B / Dp**law.beta
    pred = law.E + termN[:, None, :] + termD[None, :, :]
    return np.sum(w * huber(logL - np.log(pred), delta), axis=-1)


def _interval(profile: np.ndarray, values: np.ndarray, threshold: float) -> list[float | None]:
    inside = np.flatnonzero(profile <= threshold)
    if inside.size == 0:  # narrower than a grid cell: the cells either side of the best
        i = int(np.argmin(profile))
        inside = np.array([max(i - 1, 0), min(i + 1, len(values) - 1)])
    lo = None if inside[0] == 0 else float(values[inside[0]])
    hi = None if inside[-1] == len(values) - 1 else float(values[inside[-1]])
    return [lo, hi]


def fit_data_constrained(
    law: ChinchillaParams,
    N,
    D,
    U_D,
    L,
    *,
    huber_delta: float = 0.03,
    weights=None,
    n_grid: int = 161,
) -> DataConstrainedFit:
    """Fit R*_N, R*_D of Eq. 7/8 with the Eq. 4 constants `law` frozen."""
    N, D, U_D, L = (np.asarray(x, float) for x in (N, D, U_D, L))
    w = np.ones_like(L) if weights is None else np.asarray(weights, float)
    g = np.linspace(*LOG10_RSTAR_RANGE, n_grid)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore", under="ignore"):
        surf = _surface(law, N, D, U_D, L, w, huber_delta, g, g)
    surf = np.where(np.isfinite(surf), surf, np.inf)

    best_cells = np.argsort(surf, axis=None, kind="stable")[:4]
    i, j = np.unravel_index(best_cells, surf.shape)
    starts = np.log(10.0) * np.stack([g[i], g[j]], axis=1)  # log R*, one row per cell
    law_rows = np.tile([[law.E, law.A, law.B, law.alpha, law.beta]], (len(starts), 1))
    rs, objs = fit_rstar_batch(
        law_rows, N, D, U_D, L, w[None], huber_delta=huber_delta, starts=starts
    )
    k = int(np.argmin(objs))  # first of equals: the better cell
    lrn, lrd = np.log10(rs[k])
    obj_min = min(float(objs[k]), float(surf.min()))
    n = int(np.count_nonzero(w))
    sigma2 = max(2.0 * obj_min / max(n - 2, 1), 1e-12)
    threshold = obj_min + CHI2_1_95 * sigma2 / 2.0
    values = 10.0**g
    ci = {
        "R_star_N": _interval(surf.min(axis=1), values, threshold),
        "R_star_D": _interval(surf.min(axis=0), values, threshold),
    }
    return DataConstrainedFit(10.0**lrn, 10.0**lrd, obj_min, n, ci, g, surf)
