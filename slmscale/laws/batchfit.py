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

This is the one Eq. 4 optimizer of the house: the point fit (`chinchilla.fit_chinchilla`,
one row polished from the start grid's best 8), the bootstrap over runs (rows = weight vectors,
warm-started), the parametric bootstrap and the design's simulated studies (rows = their own
losses) all step here.

Public, stable for callers:
- `fit_chinchilla_batch(N, D, L, weights, starts)` -> `BatchFit` with (B, 5) `theta`
  (a, b, e, alpha, beta), `params` (B, 5) as (E, A, B, alpha, beta) and `objective` (B,);
  L is (P,), shared by every row (the bootstrap), or (B, P), each row its own (the design).
- `fit_from_grid(N, D, L, weights)`: every row from the start grid's best `n_polish` starts
  (the point fit, the design); `best_of_starts(N, D, L, weights, starts)`: every row from
  the same few warm starts (the bootstraps).
- The R* stage of Eq. 7/8 is `rstarfit.fit_rstar_batch`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slmscale.laws.chinchilla import THETA_BOUNDS, default_start_grid, huber, log_predict

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


def weighted_huber(r, w, delta):
    """Per row: sum of w * Huber(r) over points."""
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


def lm_solve(J, r, w, delta, lam, at_lo=None, at_hi=None):
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
    with np.errstate(divide="ignore", over="ignore", invalid="ignore", under="ignore"):
        return _lm_eq4(N, D, L, weights, starts, huber_delta, max_iter, tol)


def _lm_eq4(N, D, L, weights, starts, huber_delta, max_iter, tol) -> BatchFit:
    """The projected Levenberg-Marquardt loop of `fit_chinchilla_batch` (module doc)."""
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
    obj = weighted_huber(r, w, huber_delta)
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
        step = lm_solve(
            J, r[idx], w[idx], huber_delta, lam[idx], ui <= _LO_U + _TOL_U, ui >= _HI_U - _TOL_U
        )
        cphi = _to_phi(np.clip(_to_u(phi[idx] + step, mN, mD), _LO_U, _HI_U), mN, mD)
        clogp, cp1, cp2, cp3 = _eq4_terms(cphi, xN, xD)
        cr = logL[idx] - clogp
        cobj = weighted_huber(cr, w[idx], huber_delta)
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
    starts' polish, a small price against K times the work).  `L` is (P,) or (B, P).
    """
    L = np.asarray(L, float)
    w = np.atleast_2d(np.asarray(weights, float))
    B = max(w.shape[0], L.shape[0] if L.ndim == 2 else 1)
    w = np.broadcast_to(w, (B, w.shape[1]))
    starts = np.atleast_2d(np.asarray(starts, float))
    K = starts.shape[0]
    if K > 1:
        Lk = np.repeat(L, K, axis=0) if L.ndim == 2 else L
        screen = fit_chinchilla_batch(
            N, D, Lk, np.repeat(w, K, axis=0), np.tile(starts, (B, 1)), **kw, max_iter=screen_iter
        )
        best = np.argmin(screen.objective.reshape(B, K), axis=1)
        starts = screen.theta.reshape(B, K, 5)[np.arange(B), best]
    return fit_chinchilla_batch(N, D, L, w, starts, **kw)


N_POLISH = 8  # starts polished per fit (`fit_chinchilla`'s default)


def grid_starts(N, D, L, weights, delta: float, n: int = N_POLISH, chunk: int = 4) -> np.ndarray:
    """(B, n, 5): for each row of L (P,) or (B, P) and weights, the n best starts of the start
    grid by objective (ties: grid order).  The grid's predictions are shared by every row."""
    grid = default_start_grid()
    logN, logD = np.log(np.asarray(N, float)), np.log(np.asarray(D, float))
    logL = np.atleast_2d(np.log(np.asarray(L, float)))
    w = np.atleast_2d(np.asarray(weights, float))
    B = max(len(logL), len(w))
    logL, w = np.broadcast_to(logL, (B, logN.size)), np.broadcast_to(w, (B, logN.size))
    pred = log_predict(grid, logN, logD)  # (G, P)
    out = np.empty((B, n, 5))
    for s in range(0, B, chunk):
        r = logL[s : s + chunk, None, :] - pred
        scores = np.sum(w[s : s + chunk, None, :] * huber(r, delta), axis=-1)
        out[s : s + chunk] = grid[np.argsort(scores, axis=1, kind="stable")[:, :n]]
    return out


@dataclass
class GridFit:
    """Best fit per row and every polished optimum (for warm starts), best first."""

    theta: np.ndarray  # (B, 5)
    objective: np.ndarray  # (B,)
    optima: np.ndarray  # (B, K, 5) polished thetas, sorted by objective (stable)
    optima_objective: np.ndarray  # (B, K)


def fit_from_grid(
    N, D, L, weights=None, *, huber_delta: float, n_polish: int = N_POLISH, extra_starts=None
) -> GridFit:
    """Eq. 4 per row: the start grid's best `n_polish` starts (plus `extra_starts` (B, k, 5),
    first) polished together, the best kept.  The point fit is this with one row."""
    L = np.asarray(L, float)
    P = np.shape(N)[0]
    w = np.ones((1, P)) if weights is None else np.atleast_2d(np.asarray(weights, float))
    B = max(w.shape[0], L.shape[0] if L.ndim == 2 else 1)
    w = np.broadcast_to(w, (B, P))
    starts = grid_starts(N, D, L, w, huber_delta, n_polish) if n_polish else np.empty((B, 0, 5))
    if extra_starts is not None:
        starts = np.concatenate(
            [np.broadcast_to(extra_starts, (B, *np.shape(extra_starts)[-2:])), starts], 1
        )
    K = starts.shape[1]
    Lk = np.repeat(np.broadcast_to(L, (B, P)), K, axis=0)
    fit = fit_chinchilla_batch(
        N, D, Lk, np.repeat(w, K, axis=0), starts.reshape(-1, 5), huber_delta=huber_delta
    )
    obj, theta = fit.objective.reshape(B, K), fit.theta.reshape(B, K, 5)
    order = np.argsort(obj, axis=1, kind="stable")  # first of equals: the better-scored start
    rows = np.arange(B)[:, None]
    optima, oobj = theta[rows, order], obj[rows, order]
    return GridFit(optima[:, 0], oobj[:, 0], optima, oobj)
