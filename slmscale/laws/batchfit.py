"""Many fits at once: Eq. 4 and the R* stage of Eq. 7/8 for a batch of weight vectors.

The bootstrap (and the design simulator) refit the same runs hundreds of times with different
point weights.  A loop of scipy L-BFGS-B fits pays Python overhead per iteration per fit; here
every fit of the batch takes its step together, as (B, P) arrays.

The method is a damped Gauss-Newton (Levenberg-Marquardt) on the Huber objective of
`chinchilla.objective_and_grad`, with iteratively reweighted curvature (a point outside the
Huber delta gets curvature weight delta / |r|, which majorises its linear tail): per fit, the
step solves (H + lambda diag(H)) step = -g, is projected onto the search box, and is kept only
when the objective drops (lambda shrinks) or rejected (lambda grows).  So the objective never
rises, and a converged fit is a stationary point in the box, as L-BFGS-B's is.  The intercepts
are centred (a - alpha mean(log N)) so that A and alpha are not a near-singular pair.

The irreducible loss is stepped in E itself, not in e = log E (the box is the same: E in
[e^-5, e^5]).  Under noise the objective often falls along a ridge where E trades against
A / N^alpha (alpha -> 0) all the way to E -> 0: nearly straight in E but ever flatter in
log E, where a Gauss-Newton step shrinks with E.  Stepping in log E with at most 100 steps, the
refits stopped at E ~ 1 on draws where L-BFGS-B (`chinchilla.fit_chinchilla`) reaches the box
edge, up to 0.5% higher in objective, and a 1,000-replicate bootstrap of the bench's 240 runs
put no replicate on the edge where a fifth of them belong (tests/test_batchfit_ridge.py).  The
ridge still bends (alpha and A move with E), so such rows take a few hundred steps: hence
`max_iter` 1,000.  The returned `theta` is still (a, b, e, alpha, beta).

Public, stable for callers (bootstrap, design):
- `fit_chinchilla_batch(N, D, L, weights, starts)` -> `BatchFit` with (B, 5) `theta`
  (a, b, e, alpha, beta), `params` (B, 5) as (E, A, B, alpha, beta) and `objective` (B,);
  L is (P,), shared by every row (the bootstrap), or (B, P), each row its own (the design).
- `fit_rstar_batch(params, N, D, U_D, L, weights)` -> (B, 2) (R*_N, R*_D) and objectives,
  each row with its own Eq. 4 constants frozen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slmscale.laws.chinchilla import THETA_BOUNDS, huber

_LO = np.array([b[0] for b in THETA_BOUNDS])
_HI = np.array([b[1] for b in THETA_BOUNDS])
# The box in the stepped variables u = (a, b, E, alpha, beta): E linear (see module doc).
_LO_U, _HI_U = _LO.copy(), _HI.copy()
_LO_U[2], _HI_U[2] = np.exp(_LO[2]), np.exp(_HI[2])
# "On the bound" for the projected step: a and b pass through the centring (rounding), E, alpha
# and beta are clipped exactly onto their bounds; a looser E tolerance held E fixed ~1e-5 inside
# its bound e^-5, off the edge that `theta_at_bounds` / `at_search_bounds` look for.
_TOL_U = np.array([1e-9 * (_HI[0] - _LO[0]), 1e-9 * (_HI[1] - _LO[1]), 1e-14, 1e-14, 1e-14])


@dataclass
class BatchFit:
    theta: np.ndarray  # (B, 5): a, b, e, alpha, beta (A = exp a, B = exp b, E = exp e)
    objective: np.ndarray  # (B,)
    iterations: int

    @property
    def params(self) -> np.ndarray:
        """(B, 5) columns E, A, B, alpha, beta (chinchilla.PARAM_NAMES order)."""
        a, b, e, al, be = self.theta.T
        return np.stack([np.exp(e), np.exp(a), np.exp(b), al, be], axis=1)


def _eq4_terms(phi, xN, xD):
    """log L_hat (B, P) and d log L_hat / d(phi_1, phi_2, E): phi is (B, 5) centred
    (a_c, b_c, E, alpha, beta), xN/xD (P,) centred log N, log D."""
    t1 = phi[:, 0:1] - phi[:, 3:4] * xN
    t2 = phi[:, 1:2] - phi[:, 4:5] * xD
    t3 = np.broadcast_to(np.log(phi[:, 2:3]), t1.shape)
    m = np.maximum(np.maximum(t1, t2), t3)
    e1, e2, e3 = np.exp(t1 - m), np.exp(t2 - m), np.exp(t3 - m)
    s = e1 + e2 + e3
    return m + np.log(s), e1 / s, e2 / s, e3 / s / phi[:, 2:3]  # d/dE log L_hat = (E/L_hat)/E


def _objective(r, w, delta):
    return np.sum(w * huber(r, delta), axis=-1)


def _to_phi(u, mN, mD):
    """u (a, b, E, alpha, beta) -> centred phi (a - alpha mean log N, b - beta mean log D, E, ...)."""
    phi = u.copy()
    phi[:, 0] -= u[:, 3] * mN
    phi[:, 1] -= u[:, 4] * mD
    return phi


def _to_u(phi, mN, mD):
    u = phi.copy()
    u[:, 0] += phi[:, 3] * mN
    u[:, 1] += phi[:, 4] * mD
    return u


def _lm_solve(J, r, w, delta, lam, at_lo=None, at_hi=None):
    """The damped Gauss-Newton step for every fit: J (B, P, k), r (B, P), w (B, P), lam (B,).

    `at_lo` / `at_hi` (B, k) mark variables on a bound of the box; one whose gradient pushes it
    out of the box is held fixed for this step (a projected Newton step), so a fit whose
    optimum lies on the box edge gets there in a few steps instead of creeping along it.
    """
    a = np.abs(r)
    psi = w * np.clip(r, -delta, delta)
    cw = w * np.where(a <= delta, 1.0, delta / np.maximum(a, 1e-300))
    g = -np.einsum("bpk,bp->bk", J, psi)
    H = np.matmul((J * cw[..., None]).transpose(0, 2, 1), J)
    k = J.shape[-1]
    eye = np.eye(k)[None]
    if at_lo is not None:
        fixed = (at_lo & (g > 0)) | (at_hi & (g < 0))
        keep = ~fixed
        H = H * (keep[:, :, None] & keep[:, None, :]) + eye * fixed[:, :, None]
        g = np.where(fixed, 0.0, g)
    diag = np.einsum("bkk->bk", H)
    damp = lam[:, None] * np.maximum(diag, 1e-12) + 1e-12
    H = H + damp[:, :, None] * eye
    return np.linalg.solve(H, -g[..., None])[..., 0]


def fit_chinchilla_batch(
    N,
    D,
    L,
    weights,
    starts,
    *,
    huber_delta: float = 0.03,
    max_iter: int = 1000,
    tol: float = 1e-13,
) -> BatchFit:
    """Fit Eq. 4 once per row of `weights` (B, P), each from its row of `starts` (B, 5).

    `starts` may also be (5,) (one start for all) or (K, 5) with B = K x n_weights handled by
    the caller: here row b of `starts` belongs to row b of `weights`.  `L` is (P,), the same
    losses for every row (the bootstrap), or (B, P), each row its own (the design's simulated
    studies).  A row stops when a kept step gains at most `tol` of its objective (1e-10 left
    a fifth of the ridge replicates ~1e-4 short of the edge in log E, where the identification
    rule no longer sees them on it).  Rows on the
    E -> 0 ridge crawl along its bend for a few hundred steps (Gauss-Newton steps are limited by
    the valley's curvature), hence `max_iter` 1,000; the others stop within tens and drop out
    of the batch, so the ridge rows cost little.
    """
    logN, logD = np.log(np.asarray(N, float)), np.log(np.asarray(D, float))
    logL = np.log(np.asarray(L, float))
    w = np.atleast_2d(np.asarray(weights, float))
    B = max(w.shape[0], logL.shape[0] if logL.ndim == 2 else 1)
    w = np.broadcast_to(w, (B, logN.size))
    logL = np.broadcast_to(logL, (B, logN.size))
    u = np.broadcast_to(np.asarray(starts, float), (B, 5)).copy()
    u = np.clip(u, _LO, _HI)
    u[:, 2] = np.exp(u[:, 2])  # step in E, not log E (module doc)
    mN, mD = float(logN.mean()), float(logD.mean())
    xN, xD = logN - mN, logD - mD
    phi = _to_phi(u, mN, mD)
    logp, p1, p2, p3 = _eq4_terms(phi, xN, xD)
    r = logL - logp
    obj = _objective(r, w, huber_delta)
    lam = np.full(B, 1e-3)
    active = np.ones(B, bool)
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        J = np.stack(
            [p1[idx], p2[idx], p3[idx], -p1[idx] * xN, -p2[idx] * xD], axis=-1
        )  # d log L_hat / d phi
        # r = logL - logp, so the step that lowers the objective follows +J.
        ui = _to_u(phi[idx], mN, mD)
        step = _lm_solve(
            J, r[idx], w[idx], huber_delta, lam[idx], ui <= _LO_U + _TOL_U, ui >= _HI_U - _TOL_U
        )
        cphi = _to_phi(np.clip(_to_u(phi[idx] + step, mN, mD), _LO_U, _HI_U), mN, mD)
        clogp, cp1, cp2, cp3 = _eq4_terms(cphi, xN, xD)
        cr = logL[idx] - clogp
        cobj = _objective(cr, w[idx], huber_delta)
        better = cobj < obj[idx]
        gain = np.where(better, obj[idx] - cobj, 0.0)
        acc = idx[better]
        phi[acc], obj[acc], r[acc] = cphi[better], cobj[better], cr[better]
        p1[acc], p2[acc], p3[acc] = cp1[better], cp2[better], cp3[better]
        lam[idx] = np.where(better, np.maximum(lam[idx] / 3.0, 1e-9), lam[idx] * 4.0)
        small = gain <= tol * np.maximum(obj[idx], 1e-30)
        done = (better & small) | (lam[idx] > 1e10)
        active[idx[done]] = False
    theta = _to_u(phi, mN, mD)
    theta[:, 2] = np.log(theta[:, 2])
    return BatchFit(theta, obj, it)


def best_of_starts(N, D, L, weights, starts, *, screen_iter: int = 15, **kw) -> BatchFit:
    """Fit every row of `weights` (B, P) from each of `starts` (K, 5); keep each row's best.

    Every start runs `screen_iter` steps; only each row's best then runs to convergence (the
    objective only falls, so the start ahead after the screen is kept; its loss is the other
    starts' polish, a small price against K times the work).
    """
    w = np.atleast_2d(np.asarray(weights, float))
    starts = np.atleast_2d(np.asarray(starts, float))
    B, K = w.shape[0], starts.shape[0]
    if K > 1:
        screen = fit_chinchilla_batch(
            N, D, L, np.repeat(w, K, axis=0), np.tile(starts, (B, 1)), **kw, max_iter=screen_iter
        )
        best = np.argmin(screen.objective.reshape(B, K), axis=1)
        starts = screen.theta.reshape(B, K, 5)[np.arange(B), best]
    return fit_chinchilla_batch(N, D, L, w, starts, **kw)


# --- the R* stage of Eq. 7/8 -------------------------------------------------------------

LOG_RSTAR_BOUNDS = (np.log(0.1), np.log(1e4))  # as data_constrained.LOG10_RSTAR_RANGE


def _rstar_parts(params, N, D, U_D):
    """Per fit (B rows): U_N, R_N (B, M) and U_D, R_D (M,) of Eq. 8."""
    E, A, Bc, al, be = (params[:, i : i + 1] for i in range(5))
    s = al + be
    G = (al * A / (be * Bc)) ** (1.0 / s)
    a, b = be / s, al / s
    C_u = 6.0 * (G * U_D[None, :]) ** (1.0 / b)  # compute whose D_opt is U_D
    U_N = np.minimum(G * (C_u / 6.0) ** a, N[None, :])
    R_N = np.maximum(N[None, :] / U_N - 1.0, 0.0)
    U = np.minimum(U_D, D)
    R_D = np.maximum(D / U - 1.0, 0.0)
    return U_N, R_N, U, R_D


def _effective(u, R, logR):
    """U + U R* (1 - exp(-R / R*)) and its derivative in log R*; logR broadcasts against R."""
    Rs = np.exp(logR)
    x = R / Rs
    ex = np.exp(-x)
    val = u + u * Rs * (1.0 - ex)
    dval = u * Rs * ((1.0 - ex) - x * ex)
    return val, dval


def rstar_objective_grid(params, N, D, U_D, L, weights, log_grid, *, huber_delta=0.03, chunk=64):
    """(B, G, G) objective of every fit over (log R*_N, log R*_D) in `log_grid` x `log_grid`."""
    N, D, U_D, L = (np.asarray(x, float) for x in (N, D, U_D, L))
    params = np.atleast_2d(params)
    w = np.atleast_2d(np.asarray(weights, float))
    U_N, R_N, U, R_D = _rstar_parts(params, N, D, U_D)
    lg = np.asarray(log_grid, float)
    out = np.empty((params.shape[0], lg.size, lg.size))
    logL = np.log(L)
    Dp, _ = _effective(U[None, :], R_D[None, :], lg[:, None])  # (G, M)
    for i in range(0, params.shape[0], chunk):
        sl = slice(i, i + chunk)
        E, A, Bc, al, be = (params[sl, k][:, None, None] for k in range(5))
        Np, _ = _effective(U_N[sl, None, :], R_N[sl, None, :], lg[None, :, None])  # (b, G, M)
        tN = A / Np**al  # (b, G, M)
        tD = Bc / Dp[None] ** be  # (b, G, M)
        pred = E[..., None] + tN[:, :, None, :] + tD[:, None, :, :]
        r = logL - np.log(pred)
        out[sl] = np.sum(w[sl, None, None, :] * huber(r, huber_delta), axis=-1)
    return out


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
) -> tuple[np.ndarray, np.ndarray]:
    """R*_N, R*_D of Eq. 7/8 for each row of `params` (B, 5: E, A, B, alpha, beta) frozen.

    A coarse log grid (`n_grid`^2 cells over R* in [0.1, 1e4]) finds each fit's basin; a
    damped Gauss-Newton polish in (log R*_N, log R*_D) finishes it.  Returns ((B, 2) R*,
    (B,) objectives).
    """
    N, D, U_D, L = (np.asarray(x, float) for x in (N, D, U_D, L))
    params = np.atleast_2d(np.asarray(params, float))
    w = np.atleast_2d(np.asarray(weights, float))
    B = params.shape[0]
    lg = np.linspace(*LOG_RSTAR_BOUNDS, n_grid)
    surf = rstar_objective_grid(params, N, D, U_D, L, w, lg, huber_delta=huber_delta)
    flat = surf.reshape(B, -1).argmin(axis=1)
    x = np.stack([lg[flat // n_grid], lg[flat % n_grid]], axis=1)
    U_N, R_N, U, R_D = _rstar_parts(params, N, D, U_D)
    E, A, Bc, al, be = (params[:, k : k + 1] for k in range(5))
    logL = np.log(L)

    def evaluate(x, rows):
        Np, dNp = _effective(U_N[rows], R_N[rows], x[:, 0:1])
        Dp, dDp = _effective(U[None, :], R_D[None, :], x[:, 1:2])
        tN = A[rows] / Np ** al[rows]
        tD = Bc[rows] / Dp ** be[rows]
        pred = E[rows] + tN + tD
        r = logL - np.log(pred)
        J = np.stack([-al[rows] * tN / Np * dNp / pred, -be[rows] * tD / Dp * dDp / pred], -1)
        return r, J

    rows = np.arange(B)
    r, J = evaluate(x, rows)
    obj = _objective(r, w, huber_delta)
    lam = np.full(B, 1e-3)
    active = np.ones(B, bool)
    lo, hi = LOG_RSTAR_BOUNDS
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        xi = x[idx]
        step = _lm_solve(J[idx], r[idx], w[idx], huber_delta, lam[idx], xi <= lo, xi >= hi)
        cand = np.clip(xi + step, lo, hi)
        cr, cJ = evaluate(cand, idx)
        cobj = _objective(cr, w[idx], huber_delta)
        better = cobj < obj[idx]
        gain = np.where(better, obj[idx] - cobj, 0.0)
        acc = idx[better]
        x[acc], obj[acc], r[acc], J[acc] = cand[better], cobj[better], cr[better], cJ[better]
        lam[idx] = np.where(better, np.maximum(lam[idx] / 3.0, 1e-9), lam[idx] * 4.0)
        done = (better & (gain <= 1e-12 * np.maximum(obj[idx], 1e-30))) | (lam[idx] > 1e10)
        active[idx[done]] = False
    return np.exp(x), obj
