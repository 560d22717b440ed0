"""The R* stage of Eq. 7/8 for many fits at once: R*_N, R*_D with each row's Eq. 4 frozen.

The one R* optimizer of the house: the point fit (`data_constrained.fit_data_constrained`), the
bootstrap over runs, the parametric bootstrap and the design's simulated studies all polish here.
Each row has its own Eq. 4 constants (B, 5) and weights, and either the shared losses (M,) or its
own (B, M).  A coarse log grid over R* in [0.1, 1e4] finds each row's basin; a damped
Gauss-Newton (Levenberg-Marquardt) step in (log R*_N, log R*_D), projected onto the box, polishes
it, on the Huber objective of log residuals (`chinchilla.huber`), as Eq. 4's refits do.
"""

from __future__ import annotations

import numpy as np

from slmscale.laws.batchfit import lm_solve, weighted_huber
from slmscale.laws.chinchilla import huber

LOG_RSTAR_BOUNDS = (np.log(0.1), np.log(1e4))  # as data_constrained.LOG10_RSTAR_RANGE


def _rstar_parts(params, N, D, U_D):
    """Per fit (B rows): U_N, R_N (B, M) and U_D, R_D (M,) of Eq. 8."""
    E, A, Bc, al, be = (params[:, i : i + 1] for i in range(5))
    s = al + be
    G = (al * A / (be * Bc)) ** (1.0 / s)
    a, b = be / s, al / s
    C_u = 6.0 * (G * U_D[None, :]) ** (1.0 / b)  # compute whose D_opt is U_D
    U_N = np.minimum(G * (C_u / 6.0) ** a, N[None, :])
    U_N = np.where(np.isfinite(U_N) & (U_N > 0), U_N, N[None, :])  # degenerate Eq. 6: no excess
    R_N = np.maximum(N[None, :] / U_N - 1.0, 0.0)
    U = np.minimum(U_D, D)
    R_D = np.maximum(D / U - 1.0, 0.0)
    return U_N, R_N, U, R_D


def repetitions(params, N, D, U_D) -> tuple[np.ndarray, np.ndarray]:
    """(R_N (B, M), R_D (M,)): Eq. 8's repetitions of each run under each row's Eq. 6."""
    N, D, U_D = (np.asarray(x, float) for x in (N, D, U_D))
    with np.errstate(divide="ignore", over="ignore", invalid="ignore", under="ignore"):
        _, R_N, _, R_D = _rstar_parts(np.atleast_2d(params), N, D, U_D)
    return R_N, R_D


def _effective(u, R, logR):
    """U + U R* (1 - exp(-R / R*)) and its derivative in log R*; logR broadcasts against R."""
    Rs = np.exp(logR)
    x = R / Rs
    ex = np.exp(-x)
    val = u + u * Rs * (1.0 - ex)
    dval = u * Rs * ((1.0 - ex) - x * ex)
    return val, dval


def _rows_logL(L, B: int) -> np.ndarray:
    logL = np.log(np.asarray(L, float))
    return np.broadcast_to(logL, (B, logL.shape[-1]))


def rstar_objective_grid(params, N, D, U_D, L, weights, log_grid, *, huber_delta=0.03, chunk=64):
    """(B, G, G) objective of every fit over (log R*_N, log R*_D) in `log_grid` x `log_grid`."""
    N, D, U_D = (np.asarray(x, float) for x in (N, D, U_D))
    params = np.atleast_2d(params)
    B = params.shape[0]
    w = np.broadcast_to(np.atleast_2d(np.asarray(weights, float)), (B, N.size))
    logL = _rows_logL(L, B)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore", under="ignore"):
        U_N, R_N, U, R_D = _rstar_parts(params, N, D, U_D)
        lg = np.asarray(log_grid, float)
        out = np.empty((B, lg.size, lg.size))
        Dp, _ = _effective(U[None, :], R_D[None, :], lg[:, None])  # (G, M)
        for i in range(0, B, chunk):
            sl = slice(i, i + chunk)
            E, A, Bc, al, be = (params[sl, k][:, None, None] for k in range(5))
            Np, _ = _effective(U_N[sl, None, :], R_N[sl, None, :], lg[None, :, None])  # (b, G, M)
            tN = A / Np**al
            tD = Bc / Dp[None] ** be
            pred = E[..., None] + tN[:, :, None, :] + tD[:, None, :, :]
            r = logL[sl, None, None, :] - np.log(pred)
            out[sl] = np.sum(w[sl, None, None, :] * huber(r, huber_delta), axis=-1)
    return np.where(np.isfinite(out), out, np.inf)


def fit_rstar_batch(
    params,
    N,
    D,
    U_D,
    L,
    weights,
    *,
    huber_delta: float = 0.03,
    n_grid: int = 26,
    max_iter: int = 100,
    starts=None,
) -> tuple[np.ndarray, np.ndarray]:
    """R*_N, R*_D of Eq. 7/8 for each row of `params` (B, 5: E, A, B, alpha, beta) frozen.

    Each row starts from the best cell of an `n_grid`^2 log grid over R* in [0.1, 1e4], or
    from its `starts` (B, 2) in log R* when given, and is polished by damped Gauss-Newton.
    `L` is (M,) or (B, M).  Returns ((B, 2) R*, (B,) objectives).
    """
    N, D, U_D = (np.asarray(x, float) for x in (N, D, U_D))
    params = np.atleast_2d(np.asarray(params, float))
    B = params.shape[0]
    w = np.broadcast_to(np.atleast_2d(np.asarray(weights, float)), (B, N.size))
    if starts is None:
        lg = np.linspace(*LOG_RSTAR_BOUNDS, n_grid)
        surf = rstar_objective_grid(params, N, D, U_D, L, w, lg, huber_delta=huber_delta)
        flat = surf.reshape(B, -1).argmin(axis=1)
        x = np.stack([lg[flat // n_grid], lg[flat % n_grid]], axis=1)
    else:
        x = np.array(np.broadcast_to(starts, (B, 2)), float)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore", under="ignore"):
        x, obj = _polish(params, N, D, U_D, _rows_logL(L, B), w, x, huber_delta, max_iter)
    return np.exp(x), obj


def _polish(params, N, D, U_D, logL, w, x, delta, max_iter):
    """Projected Levenberg-Marquardt in (log R*_N, log R*_D), every row at once."""
    B = params.shape[0]
    U_N, R_N, U, R_D = _rstar_parts(params, N, D, U_D)
    E, A, Bc, al, be = (params[:, k : k + 1] for k in range(5))

    def evaluate(x, rows):
        Np, dNp = _effective(U_N[rows], R_N[rows], x[:, 0:1])
        Dp, dDp = _effective(U[None, :], R_D[None, :], x[:, 1:2])
        tN = A[rows] / Np ** al[rows]
        tD = Bc[rows] / Dp ** be[rows]
        pred = E[rows] + tN + tD
        r = logL[rows] - np.log(pred)
        J = np.stack([-al[rows] * tN / Np * dNp / pred, -be[rows] * tD / Dp * dDp / pred], -1)
        return np.where(np.isfinite(r), r, 1e3), np.where(np.isfinite(J), J, 0.0)

    rows = np.arange(B)
    r, J = evaluate(x, rows)
    obj = weighted_huber(r, w, delta)
    lam = np.full(B, 1e-3)
    active = np.ones(B, bool)
    lo, hi = LOG_RSTAR_BOUNDS
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        xi = x[idx]
        step = lm_solve(J[idx], r[idx], w[idx], delta, lam[idx], xi <= lo, xi >= hi)
        cand = np.clip(xi + step, lo, hi)
        cr, cJ = evaluate(cand, idx)
        cobj = weighted_huber(cr, w[idx], delta)
        better = cobj < obj[idx]
        gain = np.where(better, obj[idx] - cobj, 0.0)
        acc = idx[better]
        x[acc], obj[acc], r[acc], J[acc] = cand[better], cobj[better], cr[better], cJ[better]
        lam[idx] = np.where(better, np.maximum(lam[idx] / 3.0, 1e-9), lam[idx] * 4.0)
        done = (better & (gain <= 1e-12 * np.maximum(obj[idx], 1e-30))) | (lam[idx] > 1e10)
        active[idx[done]] = False
    return x, obj
