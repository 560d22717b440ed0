"""Many refits of simulated studies at once, for `design` (pure core: numpy + scipy).

Every simulated study of a grid shares its runs (N, D) and differs only in its losses, so the
fitter's 7,776-start grid is predicted once and scored against all of them in one vectorised
pass, and the best 8 starts of every study are polished together as one batch by
`batchfit.fit_chinchilla_batch`, the bootstrap's refitter (a projected Levenberg-Marquardt on
the objective of `chinchilla.objective_and_grad`, the Huber loss of log residuals, summed, in the
same search box, stepping in E so that it follows the E -> 0 ridge to the box edge); here each
row has its own simulated losses.
R* refits go to worker processes with `batchfit.fit_rstar_batch`, the refitter of the fit's
bootstrap, while the caller goes on with the next grid.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

from slmscale.laws.batchfit import fit_chinchilla_batch, fit_rstar_batch
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
        fit = fit_chinchilla_batch(
            N, D, np.repeat(L, K, axis=0), np.repeat(w, K, axis=0), starts.reshape(-1, 5),
            huber_delta=delta,
        )
    theta, obj = fit.theta, fit.objective.reshape(S, K)
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
