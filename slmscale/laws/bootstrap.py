"""Bootstrap over runs for 95% intervals of the Eq. 4 constants.

A replicate draws as many runs as there are, with replacement (seeded, so reruns agree), and
refits Eq. 4 with point weights = draw counts.  Refits start from the full-data optima (warm
starts) instead of the whole start grid: a resample moves the optimum a little, and the
full-data fit already found the basin.  Replicates are split over a small process pool; each
replicate's draw depends only on (seed, index), so the result does not depend on the pool.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

from slmscale.laws.chinchilla import PARAM_NAMES, ChinchillaFit, fit_chinchilla


def resample_weights(n_runs: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_runs) draw counts of runs, one row per replicate."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_runs, size=(n_boot, n_runs))
    return np.stack([np.bincount(row, minlength=n_runs) for row in idx]).astype(float)


def _refit_chunk(args) -> np.ndarray:
    N, D, L, delta, warm, weights = args
    out = np.empty((len(weights), len(PARAM_NAMES)))
    for i, w in enumerate(weights):
        f = fit_chinchilla(
            N, D, L, huber_delta=delta, weights=w, starts=np.empty((0, 5)), warm_starts=warm
        )
        out[i] = [getattr(f.params, k) for k in PARAM_NAMES]
    return out


def warm_starts_from(fit: ChinchillaFit, n: int = 2) -> list[np.ndarray]:
    """The best `n` distinct optima of a full-data fit."""
    out: list[np.ndarray] = []
    for theta, _ in fit.optima:
        if all(np.max(np.abs(theta - t)) > 1e-3 for t in out):
            out.append(theta)
        if len(out) == n:
            break
    return out


def bootstrap_chinchilla(
    N,
    D,
    L,
    fit: ChinchillaFit,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    workers: int = 1,
    progress=None,
) -> np.ndarray:
    """(n_boot, 5) samples of (E, A, B, alpha, beta) from refits on resampled runs."""
    N, D, L = (np.asarray(x, float) for x in (N, D, L))
    weights = resample_weights(L.size, n_boot, seed)
    warm = warm_starts_from(fit)
    chunk = max(1, min(50, -(-n_boot // max(workers, 1))))
    jobs = [
        (N, D, L, fit.huber_delta, warm, weights[i : i + chunk]) for i in range(0, n_boot, chunk)
    ]
    results = []
    if workers <= 1:
        for job in jobs:
            results.append(_refit_chunk(job))
            progress and progress.update(len(job[-1]))
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for job, res in zip(jobs, pool.map(_refit_chunk, jobs), strict=True):
                results.append(res)
                progress and progress.update(len(job[-1]))
    return np.concatenate(results) if results else np.empty((0, len(PARAM_NAMES)))


def percentile_ci(samples: np.ndarray, names=PARAM_NAMES) -> dict[str, list[float]]:
    """2.5th and 97.5th percentiles per column."""
    lo, hi = np.percentile(samples, [2.5, 97.5], axis=0)
    return {k: [float(lo[i]), float(hi[i])] for i, k in enumerate(names)}
