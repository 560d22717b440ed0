"""Many refits of simulated studies at once, for `design` (pure core: numpy + scipy).

Every simulated study of a grid shares its runs (N, D) and differs only in its losses, so the
fitter's 7,776-start grid is predicted once and scored against all of them in one vectorised
pass, and the best 8 starts of every study are polished together as one batch: a projected
Levenberg-Marquardt on the objective of `chinchilla.objective_and_grad` (the Huber loss of log
residuals, summed) in the same search box.  `batchfit.fit_chinchilla_batch` does the same for the
bootstrap, where the losses are shared and the weights differ; here each row has its own losses.
R* refits go to worker processes with `batchfit.fit_rstar_batch`, the refitter of the fit's
bootstrap, while the caller goes on with the next grid.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

from slmscale.laws.batchfit import fit_rstar_batch
from slmscale.laws.chinchilla import (
    THETA_BOUNDS,
    default_start_grid,
    huber,
    log_predict,
    single_threaded_blas,
)

N_POLISH = 8  # as fit_chinchilla's default
_LO = np.array([b[0] for b in THETA_BOUNDS])
_HI = np.array([b[1] for b in THETA_BOUNDS])


# --- Eq. 4 refits, many at once ---------------------------------------------------------------


def _lse_parts(theta, logN, logD):
    """log L_hat (B, P) and the softmax weights p1, p2, p3 of its three terms."""
    t1 = theta[:, 0:1] - theta[:, 3:4] * logN
    t2 = theta[:, 1:2] - theta[:, 4:5] * logD
    t3 = np.broadcast_to(theta[:, 2:3], t1.shape)
    m = np.maximum(np.maximum(t1, t2), t3)
    e1, e2, e3 = np.exp(t1 - m), np.exp(t2 - m), np.exp(t3 - m)
    s = e1 + e2 + e3
    return m + np.log(s), e1 / s, e2 / s, e3 / s


def polish_batch(logN, logD, logL, w, theta0, delta: float, max_iter: int = 300):
    """Minimise sum w Huber(log L - log L_hat) from each row of `theta0` (B, 5) in the box.

    Projected Levenberg-Marquardt: the Gauss-Newton curvature of the Huber objective (a point
    outside delta gets weight delta / |r|, which majorises its linear tail), Marquardt damping,
    coordinates on a bound whose gradient points out of the box held fixed, and a step kept only
    when the objective drops.  Steps are taken in (a, b, E, alpha, beta), not e = log E: on the
    ridge where E trades against A / N^alpha the objective slides towards E -> 0, which is a
    straight line in E but an ever flatter one in e (thousands of steps instead of a few).
    Every row stops when a kept step gains less than 1e-13 of its objective.  logL and w are
    (B, P): each row its own simulated losses.
    """
    lo, hi = _LO.copy(), _HI.copy()
    lo[2], hi[2] = np.exp(_LO[2]), np.exp(_HI[2])
    u = np.clip(np.array(theta0, float), _LO, _HI)
    u[:, 2] = np.exp(u[:, 2])

    def parts(u):
        th = u.copy()
        th[:, 2] = np.log(th[:, 2])
        logp, p1, p2, p3 = _lse_parts(th, logN, logD)
        return logp, p1, p2, p3 / u[:, 2:3]  # d log L_hat / dE = 1 / L_hat = p3 / E

    logp, p1, p2, p3 = parts(u)
    r = logL - logp
    obj = np.sum(w * huber(r, delta), axis=-1)
    lam = np.full(len(u), 1e-3)
    active = np.ones(len(u), bool)
    for _ in range(max_iter):
        i = np.flatnonzero(active)
        if i.size == 0:
            break
        J = np.stack([p1[i], p2[i], p3[i], -p1[i] * logN, -p2[i] * logD], axis=-1)
        ri, wi = r[i], w[i]
        psi = wi * np.clip(ri, -delta, delta)
        cw = wi * np.where(np.abs(ri) <= delta, 1.0, delta / np.maximum(np.abs(ri), 1e-300))
        g = -np.einsum("bpk,bp->bk", J, psi)  # gradient of the objective
        H = np.matmul((J * cw[..., None]).transpose(0, 2, 1), J)
        ui = u[i]
        fixed = ((ui <= lo * (1 + 1e-12)) & (g > 0)) | ((ui >= hi * (1 - 1e-12)) & (g < 0))
        g = np.where(fixed, 0.0, g)
        H = np.where(fixed[:, :, None] | fixed[:, None, :], 0.0, H)
        d = np.einsum("bkk->bk", H)
        damp = lam[i, None] * np.maximum(d, 1e-12) + np.where(fixed, 1.0, 1e-12)
        step = np.linalg.solve(H + damp[..., None] * np.eye(5), -g[..., None])[..., 0]
        cand = np.clip(ui + step, lo, hi)
        clogp, c1, c2, c3 = parts(cand)
        cr = logL[i] - clogp
        cobj = np.sum(wi * huber(cr, delta), axis=-1)
        better = cobj < obj[i]
        k = i[better]
        gain = obj[k] - cobj[better]
        u[k], obj[k], r[k] = cand[better], cobj[better], cr[better]
        p1[k], p2[k], p3[k] = c1[better], c2[better], c3[better]
        lam[i] = np.where(better, np.maximum(lam[i] / 3.0, 1e-12), lam[i] * 4.0)
        stop = np.zeros(i.size, bool)
        stop[better] = gain <= 1e-13 * np.maximum(obj[k], 1e-300)
        active[i[stop | (lam[i] > 1e12)]] = False
    u[:, 2] = np.log(u[:, 2])
    return u, obj


def best_starts(logN, logD, logL, w, delta: float, n: int = N_POLISH, chunk: int = 4):
    """(S, n, 5): for each row of logL (S, P), the n best starts of `default_start_grid`,
    ranked as `fit_chinchilla` ranks them (score, then grid order)."""
    grid = default_start_grid()
    pred = log_predict(grid, logN, logD)  # (G, P), shared by every simulation
    out = np.empty((len(logL), n, 5))
    for s in range(0, len(logL), chunk):
        scores = np.sum(w[s : s + chunk, None, :] * huber(logL[s : s + chunk, None, :] - pred, delta), axis=-1)
        out[s : s + chunk] = grid[np.argsort(scores, axis=1, kind="stable")[:, :n]]
    return out


def fit_eq4_many(N, D, L, delta: float, warm: np.ndarray | None = None):
    """Eq. 4 refit of every row of L (S, P): (S, 5) theta (a, b, e, alpha, beta), (S,) objective.

    Without `warm`: the fitter's start grid, best 8 polished per row.  With `warm` (S, K, 5):
    those starts only (a refit after adding one run, as the bootstrap warm-starts its refits).
    """
    logN, logD, logL = np.log(np.asarray(N, float)), np.log(np.asarray(D, float)), np.log(L)
    w = np.ones_like(logL)
    starts = best_starts(logN, logD, logL, w, delta) if warm is None else warm
    S, K = starts.shape[:2]
    with single_threaded_blas():  # thousands of 5 x 5 solves: threads only cost here
        theta, obj = polish_batch(
            logN, logD, np.repeat(logL, K, axis=0), np.repeat(w, K, axis=0), starts.reshape(-1, 5), delta
        )
    obj = obj.reshape(S, K)
    best = np.argmin(obj, axis=1)  # first of equals: the better-scored start, as fit_chinchilla
    return theta.reshape(S, K, 5)[np.arange(S), best], obj[np.arange(S), best]


def theta_to_params(theta: np.ndarray) -> np.ndarray:
    """(S, 5) (a, b, e, alpha, beta) -> (S, 5) (E, A, B, alpha, beta)."""
    a, b, e, al, be = theta.T
    return np.column_stack([np.exp(e), np.exp(a), np.exp(b), al, be])


def theta_at_bounds(theta: np.ndarray, rtol: float = 1e-6) -> np.ndarray:
    """(S, 5) in PARAM_NAMES order: the refit put the constant on the search-box edge."""
    tol = rtol * np.maximum(1.0, _HI - _LO)
    edge = (theta <= _LO + tol) | (theta >= _HI - tol)  # a, b, e, alpha, beta
    return edge[:, [2, 0, 1, 3, 4]]


def optimal_loss_many(params: np.ndarray, C: float) -> np.ndarray:
    """Eq. 4 at the Eq. 6 compute-optimal allocation of C, for each row of (S, 5) params."""
    E, A, B, al, be = params.T
    with np.errstate(all="ignore"):
        s = al + be
        G = (al * A / (be * B)) ** (1.0 / s)
        N = G * (C / 6.0) ** (be / s)
        D = (C / 6.0) ** (al / s) / G
        out = E + A / N**al + B / D**be
    return np.where(np.isfinite(out), out, np.nan)


# --- R* refits (the fitter itself, in worker processes) ----------------------------------------


def _rstar_chunk(args) -> np.ndarray:
    """R* refits of a chunk of simulations: each its own Eq. 4 law and its own losses.

    `fit_rstar_batch` is the R* refitter of `slmscale fit`'s bootstrap (a 26 x 26 log grid,
    then a damped Gauss-Newton polish); on simulated paper-grid studies it agrees with the point
    fit `fit_data_constrained` within 2% on every draw tested, at a tenth of the cost.
    """
    params, N, D, U, L, delta = args
    out = np.empty((len(params), 2))
    ones = np.ones((1, len(N)))
    with single_threaded_blas():
        for s, (p, losses) in enumerate(zip(params, L, strict=True)):
            out[s] = fit_rstar_batch(p[None], N, D, U, losses, ones, huber_delta=delta)[0][0]
    return out


class _Done:
    """A computed-on-demand stand-in for a future (one worker: the caller's own process)."""

    def __init__(self, fn, job):
        self.fn, self.job = fn, job

    def result(self):
        return self.fn(self.job)


class Workers:
    """Processes for the R* refits, as a context: jobs are submitted while the caller goes on
    with the next grid's Eq. 4 refits, and collected in order (the result does not depend on
    the number of workers)."""

    def __init__(self, n: int = 1):
        self.n, self._pool = n, None

    def __enter__(self):
        if self.n > 1:
            self._pool = ProcessPoolExecutor(self.n, mp_context=get_context("spawn"))
        return self

    def __exit__(self, *exc):
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def submit(self, fn, job):
        return self._pool.submit(fn, job) if self._pool is not None else _Done(fn, job)


def submit_rstar(workers: Workers, params, N, D, U, L, delta: float, chunk: int = 25) -> list:
    """R*_N, R*_D for each row of `params` (its own Eq. 4 law frozen)
    and of L (its own losses), in chunks: [(rows, future)]; see `collect_rstar`."""
    return [
        (len(params[i : i + chunk]), workers.submit(_rstar_chunk, (params[i : i + chunk], N, D, U, L[i : i + chunk], delta)))
        for i in range(0, len(params), chunk)
    ]


def collect_rstar(pending: list, progress=None) -> np.ndarray:
    out = []
    for n, fut in pending:
        out.append(fut.result())
        progress and progress(n)
    return np.concatenate(out) if out else np.empty((0, 2))
