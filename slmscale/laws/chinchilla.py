"""Eq. 4 (Hoffmann et al. 2022): L_hat(N, D) = E + A / N^alpha + B / D^beta.

Fitted as Hoffmann and Muennighoff do: with E = exp(e), A = exp(a), B = exp(b),

    log L_hat = LSE(a - alpha log N, b - beta log D, e)

and the Huber loss (delta = 0.03 in the seed paper) of log L - log L_hat, *summed* over points
(with the mean the objective is tiny and L-BFGS stops early).  The surface has many local optima,
so we start from a grid at least as dense as Hoffmann's (alpha, beta, e, a, b; ~7,800 starts).
Scoring every start in one vectorised numpy pass and polishing only the best 8 (all at once, by
the house's one Eq. 4 optimizer, `batchfit`: a projected Levenberg-Marquardt on this objective
in the same search box) reaches the optimum of a plain loop of L-BFGS-B fits from every start
(the benchmark baseline in `slmscale/bench/fit.py`) at a small fraction of the cost.

Point weights (`weights`) let the bootstrap resample runs without copying data: a run drawn k
times has weight k.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

# theta = (a, b, e, alpha, beta); exp(a) = A, exp(b) = B, exp(e) = E.
PARAM_NAMES = ("E", "A", "B", "alpha", "beta")
N_PARAMS = len(PARAM_NAMES)
# Box for L-BFGS-B: exponents non-negative and below 3; A, B up to e^40; E from e^-5 to e^5.
# Without it, ill-posed resamples run away (alpha -> 15, A -> e^110) and take 100x longer.
THETA_BOUNDS = [(-10.0, 40.0), (-10.0, 40.0), (-5.0, 5.0), (0.0, 3.0), (0.0, 3.0)]


@dataclass(frozen=True)
class ChinchillaParams:
    """The five constants of Eq. 4."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def predict(self, N, D) -> np.ndarray:
        """L_hat(N, D), Eq. 4."""
        N, D = np.asarray(N, float), np.asarray(D, float)
        return self.E + self.A / N**self.alpha + self.B / D**self.beta

    def as_dict(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in PARAM_NAMES}

    @classmethod
    def from_dict(cls, d: dict) -> ChinchillaParams:
        return cls(*(float(d[k]) for k in PARAM_NAMES))

    @classmethod
    def from_theta(cls, theta) -> ChinchillaParams:
        a, b, e, alpha, beta = (float(t) for t in theta)
        return cls(np.exp(e), np.exp(a), np.exp(b), alpha, beta)

    def theta(self) -> np.ndarray:
        return np.array([np.log(self.A), np.log(self.B), np.log(self.E), self.alpha, self.beta])


@dataclass
class ChinchillaFit:
    params: ChinchillaParams
    objective: float
    n_points: int
    huber_delta: float
    # Polished optima (theta, objective), best first: warm starts for bootstrap refits.
    optima: list[tuple[np.ndarray, float]] = field(default_factory=list)


def default_start_grid() -> np.ndarray:
    """Starts (a, b, e, alpha, beta): Hoffmann's grid, widened to alpha, beta <= 2.5, e <= 1.5.

    Hoffmann: alpha, beta in {0, .5, ..., 2}, e in {-1, -.5, ..., 1}, a, b in {0, 5, ..., 25}
    (4,500 starts).  Here 6 x 6 x 6 x 6 x 6 = 7,776 starts.
    """
    ab = np.arange(0.0, 26.0, 5.0)
    e = np.arange(-1.0, 1.51, 0.5)
    exps = np.arange(0.0, 2.51, 0.5)
    return np.array(list(itertools.product(ab, ab, e, exps, exps)), dtype=float)


def huber(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def _lse_terms(theta: np.ndarray, logN: np.ndarray, logD: np.ndarray):
    """The three log-terms of Eq. 4; theta is (..., 5), logN/logD are (P,) -> (..., P) each."""
    a, b, e, alpha, beta = (theta[..., i : i + 1] for i in range(5))
    return a - alpha * logN, b - beta * logD, np.broadcast_to(e, (*e.shape[:-1], logN.size))


def log_predict(theta: np.ndarray, logN: np.ndarray, logD: np.ndarray) -> np.ndarray:
    t1, t2, t3 = _lse_terms(np.asarray(theta, float), logN, logD)
    m = np.maximum(np.maximum(t1, t2), t3)
    return m + np.log(np.exp(t1 - m) + np.exp(t2 - m) + np.exp(t3 - m))


def objective_and_grad(theta, logN, logD, logL, w, delta) -> tuple[float, np.ndarray]:
    """Sum of w * Huber(log L - log L_hat) and its analytic gradient in theta."""
    t1, t2, t3 = _lse_terms(np.asarray(theta, float), logN, logD)
    m = np.maximum(np.maximum(t1, t2), t3)
    e1, e2, e3 = np.exp(t1 - m), np.exp(t2 - m), np.exp(t3 - m)
    s = e1 + e2 + e3
    r = logL - (m + np.log(s))
    psi = w * np.clip(r, -delta, delta) / s  # dHuber/dr, over the softmax denominator
    grad = -np.array(
        [
            np.sum(psi * e1),
            np.sum(psi * e2),
            np.sum(psi * e3),
            -np.sum(psi * e1 * logN),
            -np.sum(psi * e2 * logD),
        ]
    )
    return float(np.sum(w * huber(r, delta))), grad


def score_starts(starts, logN, logD, logL, w, delta, chunk: int = 2048) -> np.ndarray:
    """The objective at every start, vectorised over starts x points (chunked for memory)."""
    out = np.empty(len(starts))
    for i in range(0, len(starts), chunk):
        pred = log_predict(starts[i : i + chunk], logN, logD)
        out[i : i + chunk] = np.sum(w * huber(logL - pred, delta), axis=-1)
    return out


# The constants behind theta = (a, b, e, alpha, beta), in that order.
THETA_CONSTANTS = ("A", "B", "E", "alpha", "beta")


def at_search_bounds(params: ChinchillaParams, rtol: float = 1e-6) -> list[str]:
    """Constants the optimum put on the edge of the search box: the data do not identify them.

    E at its lower bound, say, means the runs are too far from saturation to tell the
    irreducible loss apart from zero; the value is an artefact of the box, not a measurement.
    """
    theta = params.theta()
    out = []
    for name, value, (lo, hi) in zip(THETA_CONSTANTS, theta, THETA_BOUNDS, strict=True):
        tol = rtol * max(1.0, hi - lo)
        if value <= lo + tol or value >= hi - tol:
            out.append(name)
    return sorted(out)


def single_threaded_blas():
    """A context limiting BLAS/OpenMP pools to one thread.

    The refits solve thousands of 5 x 5 systems; a multi-threaded BLAS pays its thread
    hand-off on each.  Measured on the 2-core CI machine: one Eq. 4 fit took 0.2-0.8 s with one
    thread and 7-21 s with OpenBLAS's default two (slmscale bench, fit section).
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def fit_chinchilla(
    N,
    D,
    L,
    *,
    huber_delta: float = 0.03,
    weights=None,
    n_polish: int = 8,
    warm_starts: list[np.ndarray] | None = None,
) -> ChinchillaFit:
    """Fit Eq. 4: score every start of the grid at once, polish the best `n_polish` together.

    `warm_starts` are polished as well, ahead of the grid's (`n_polish=0`: only them).
    """
    from slmscale.laws.batchfit import fit_from_grid  # batchfit builds on this module

    N, D, L = (np.asarray(x, float) for x in (N, D, L))
    w = np.ones_like(L) if weights is None else np.asarray(weights, float)
    extra = None if not warm_starts else np.asarray(warm_starts, float)[None]
    with single_threaded_blas():
        g = fit_from_grid(
            N, D, L, w, huber_delta=huber_delta, n_polish=n_polish, extra_starts=extra
        )
    optima = [(g.optima[0, k], float(g.optima_objective[0, k])) for k in range(g.optima.shape[1])]
    return ChinchillaFit(
        ChinchillaParams.from_theta(g.theta[0]),
        float(g.objective[0]),
        int(np.count_nonzero(w)),
        huber_delta,
        optima,
    )


def r_squared(L, L_hat) -> float:
    """1 - SS_res / SS_tot on the loss itself (not its log)."""
    L, L_hat = np.asarray(L, float), np.asarray(L_hat, float)
    ss_tot = float(np.sum((L - L.mean()) ** 2))
    return float(1.0 - np.sum((L - L_hat) ** 2) / ss_tot) if ss_tot > 0 else float("nan")
