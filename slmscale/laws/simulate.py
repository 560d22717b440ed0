"""Simulated studies: losses drawn from a known law at given runs, refitted as `slmscale fit` fits.

Pure core (numpy).  Three users share it: `design` (a planned grid, true laws from a prior),
the fit's parametric bootstrap (the fit's own runs, the fitted law as the truth, the measured
noise) and the identification check of a fit (`verdicts`).  Losses: Eq. 4 for single-epoch
runs, Eq. 7/8 for multi-epoch ones (the law each stage fits), times exp(sigma z).  Each run's
z-stream is keyed by the run itself (N, D, U_D) and the seed, so studies that share a run share
its noise (common random numbers).  Refits use the house's optimizers: Eq. 4 by
`batchfit` (from the start grid's best 8, or warm-started), R* by `rstarfit` with each study's
own Eq. 4 frozen.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

from slmscale.laws import data_constrained as dc
from slmscale.laws.batchfit import best_of_starts, fit_from_grid
from slmscale.laws.chinchilla import THETA_BOUNDS, single_threaded_blas
from slmscale.laws.rstarfit import fit_rstar_batch

RSTAR_EDGES = tuple(10.0**x for x in dc.LOG10_RSTAR_RANGE)
_LO = np.array([b[0] for b in THETA_BOUNDS])
_HI = np.array([b[1] for b in THETA_BOUNDS])


def point_noise(N, D, U, n_sims: int, seed: int, run_seeds=None) -> np.ndarray:
    """(n_sims, P) standard normals; each run's column depends only on (seed, N, D, U_D) and,
    for seed repeats of a point, the run's own training seed (`run_seeds`, 0 = none)."""
    out = np.empty((n_sims, len(N)))
    rs = np.zeros(len(N), int) if run_seeds is None else np.asarray(run_seeds, int)
    for j, (n, d, u) in enumerate(zip(N, D, U, strict=True)):
        key = struct.pack("<3d", float(n), float(d), float(u))
        if rs[j]:
            key += struct.pack("<q", int(rs[j]))
        h = hashlib.sha256(key).digest()
        rng = np.random.default_rng([seed, int.from_bytes(h[:8], "little")])
        out[:, j] = rng.standard_normal(n_sims)
    return out


def true_losses(truths: np.ndarray, N, D, U) -> np.ndarray:
    """(S, P) noise-free losses of S laws (S, 7): Eq. 4 where U_D = D, Eq. 7/8 elsewhere."""
    N, D, U = (np.asarray(x, float) for x in (N, D, U))
    truths = np.atleast_2d(truths)
    E, A, B, al, be = (truths[:, i : i + 1] for i in range(5))
    out = E + A / N**al + B / D**be
    multi = U < D * (1 - 1e-9)
    if multi.any():
        out[:, multi] = dc.predict_rows(truths, N[multi], D[multi], U[multi])
    return out


def simulate_losses(truths, N, D, U, sigma, seed: int, run_seeds=None) -> np.ndarray:
    """(S, P) losses: `true_losses` times log-normal noise of sigma (scalar or (P,))."""
    z = point_noise(N, D, U, len(np.atleast_2d(truths)), seed, run_seeds)
    return true_losses(truths, N, D, U) * np.exp(np.asarray(sigma, float) * z)


def refit_eq4(N, D, L, delta: float, warm=None) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 4 refit of every row of L (S, P): (S, 5) theta (a, b, e, alpha, beta), (S,) objective.

    Without `warm`: the fitter's start grid, best 8 polished per row (as `fit_chinchilla`).
    With `warm` (K, 5) or (S, K, 5): those starts only (as the bootstrap warm-starts).
    """
    L = np.atleast_2d(L)
    ones = np.ones_like(L)
    with single_threaded_blas():  # thousands of 5 x 5 solves: threads only cost here
        if warm is None:
            g = fit_from_grid(N, D, L, ones, huber_delta=delta)
            return g.theta, g.objective
        warm = np.asarray(warm, float)
        if warm.ndim == 2:
            fit = best_of_starts(N, D, L, ones, warm, huber_delta=delta)
            return fit.theta, fit.objective
        g = fit_from_grid(N, D, L, ones, huber_delta=delta, n_polish=0, extra_starts=warm)
        return g.theta, g.objective


def refit_rstar(params, N, D, U, L, delta: float, n_grid: int = 26) -> np.ndarray:
    """(S, 2) R*_N, R*_D for each row of params (S, 5) frozen and of L (S, M); `n_grid`: the
    coarse log grid per axis that seeds each polish (`rstarfit.fit_rstar_batch`)."""
    L = np.atleast_2d(L)
    with single_threaded_blas():
        rs, _ = fit_rstar_batch(
            params, N, D, U, L, np.ones_like(L), huber_delta=delta, n_grid=n_grid
        )
    return rs


def theta_to_params(theta: np.ndarray) -> np.ndarray:
    """(S, 5) (a, b, e, alpha, beta) -> (S, 5) (E, A, B, alpha, beta)."""
    a, b, e, al, be = np.atleast_2d(theta).T
    return np.column_stack([np.exp(e), np.exp(a), np.exp(b), al, be])


def theta_at_bounds(theta: np.ndarray, rtol: float = 1e-6) -> np.ndarray:
    """(S, 5) in PARAM_NAMES order: the refit put the constant on the search-box edge."""
    tol = rtol * np.maximum(1.0, _HI - _LO)
    edge = (theta <= _LO + tol) | (theta >= _HI - tol)  # a, b, e, alpha, beta
    return edge[:, [2, 0, 1, 3, 4]]


def rstar_at_bounds(rstar: np.ndarray) -> np.ndarray:
    lo, hi = RSTAR_EDGES
    return (rstar <= lo * (1 + 1e-6)) | (rstar >= hi * (1 - 1e-6))


def with_exponents(x: np.ndarray) -> np.ndarray:
    """Append Eq. 6's G, a, b to rows (S, 7) of E, A, B, alpha, beta, R*_N, R*_D -> (S, 10)."""
    with np.errstate(all="ignore"):
        _, A, B, al, be = (x[:, i] for i in range(5))
        s = al + be
        G = (al * A / (be * B)) ** (1.0 / s)
        return np.column_stack([x, G, be / s, al / s])


def optimal_loss_many(params: np.ndarray, C: float) -> np.ndarray:
    """Eq. 4 at the Eq. 6 compute-optimal allocation of C, for each row of (S, 5) params."""
    E, A, B, al, be = params.T[:5]
    with np.errstate(all="ignore"):
        s = al + be
        G = (al * A / (be * B)) ** (1.0 / s)
        N = G * (C / 6.0) ** (be / s)
        D = (C / 6.0) ** (al / s) / G
        out = E + A / N**al + B / D**be
    return np.where(np.isfinite(out), out, np.nan)


def refit_studies(N, D, U, L, delta: float, warm=None) -> tuple[np.ndarray, np.ndarray]:
    """Both stages on each simulated study: (S, 10) estimates (E, A, B, alpha, beta, R*_N,
    R*_D, G, a, b; R* NaN with fewer than 3 multi-epoch runs) and (S, 10) on-the-box flags."""
    N, D, U = (np.asarray(x, float) for x in (N, D, U))
    L = np.atleast_2d(L)
    single = U >= D * (1 - 1e-9)
    theta, _ = refit_eq4(N[single], D[single], L[:, single], delta, warm)
    est = np.full((len(L), 7), np.nan)
    est[:, :5] = theta_to_params(theta)
    edge = np.zeros((len(L), 10), bool)
    edge[:, :5] = theta_at_bounds(theta)
    m = ~single
    if m.sum() >= 3:
        est[:, 5:7] = refit_rstar(est[:, :5], N[m], D[m], U[m], L[:, m], delta)
        edge[:, 5:7] = rstar_at_bounds(est[:, 5:7])
    edge[:, 7:10] = edge[:, [3, 4]].any(axis=1, keepdims=True)  # G, a, b follow the exponents
    return with_exponents(est), edge
