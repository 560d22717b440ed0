"""One bootstrap over runs that refits both stages, for 95% intervals of every reported number.

A replicate draws runs with replacement, single-epoch and multi-epoch runs each within their
own group (so every replicate has both kinds, as the design does), seeded so reruns agree; a
run drawn k times has weight k.  In each replicate:
1. Eq. 4 is refitted on the single-epoch runs (warm-started from the full-data optima, all
   replicates at once: `batchfit.best_of_starts`);
2. R*_N, R*_D are refitted on the multi-epoch runs with *that replicate's* Eq. 4 constants
   frozen (`batchfit.fit_rstar_batch`), so the uncertainty of Eq. 4 reaches R*;
3. everything derived (G, a, b, envelope exponents, gamma_q, planner outputs) is recomputed
   from the replicate's constants and runs by the caller (`study`, `plan`).

Intervals are percentile intervals (2.5th, 97.5th).  The replicate draws depend only on the
seed, not on chunking, so the progress display does not change the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slmscale.laws.batchfit import best_of_starts
from slmscale.laws.chinchilla import PARAM_NAMES, ChinchillaFit
from slmscale.laws.rstarfit import fit_rstar_batch

CHUNK = 250  # replicates per vectorised batch (memory ~ CHUNK x runs x 5 x a few arrays)


def resample_weights(n_runs: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_runs) draw counts of runs, one row per replicate."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_runs, size=(n_boot, n_runs))
    return np.stack([np.bincount(row, minlength=n_runs) for row in idx]).astype(float)


def stratified_weights(strata, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) draw counts, resampling runs within each stratum (label) separately."""
    strata = np.asarray(strata)
    out = np.zeros((n_boot, strata.size))
    rng = np.random.default_rng(seed)
    for label in sorted(set(strata.tolist())):
        members = np.flatnonzero(strata == label)
        idx = rng.integers(0, members.size, size=(n_boot, members.size))
        counts = np.zeros((n_boot, members.size))
        np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1.0)
        out[:, members] = counts
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


def refit_eq4(N, D, L, fit: ChinchillaFit, weights, *, progress=None) -> np.ndarray:
    """(B, 5) (E, A, B, alpha, beta), one Eq. 4 refit per row of `weights` (B, runs)."""
    weights = np.atleast_2d(weights)
    starts = np.array(warm_starts_from(fit))
    out = np.empty((len(weights), len(PARAM_NAMES)))
    for i in range(0, len(weights), CHUNK):
        w = weights[i : i + CHUNK]
        out[i : i + len(w)] = best_of_starts(N, D, L, w, starts, huber_delta=fit.huber_delta).params
        progress and progress.update(len(w))
    return out


def bootstrap_chinchilla(
    N,
    D,
    L,
    fit: ChinchillaFit,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    progress=None,
) -> np.ndarray:
    """(n_boot, 5) samples of (E, A, B, alpha, beta) from refits on resampled runs."""
    N, D, L = (np.asarray(x, float) for x in (N, D, L))
    return refit_eq4(N, D, L, fit, resample_weights(L.size, n_boot, seed), progress=progress)


@dataclass
class TwoStage:
    """Samples of one bootstrap over runs; rows are replicates."""

    weights: np.ndarray  # (B, runs of the table) draw counts
    eq4: np.ndarray  # (B, 5) E, A, B, alpha, beta
    rstar: np.ndarray | None  # (B, 2) R*_N, R*_D (None without the multi-epoch stage)


def bootstrap_two_stage(
    table,
    fit: ChinchillaFit,
    *,
    n_boot: int,
    seed: int = 0,
    with_rstar: bool = False,
    progress=None,
) -> TwoStage:
    """Resample the runs of `table` (a RunsTable) and refit Eq. 4, then R* (see module doc)."""
    single = table.single_epoch
    W = stratified_weights(np.where(single, 0, 1), n_boot, seed)
    s = np.flatnonzero(single)
    eq4 = refit_eq4(table.N[s], table.D[s], table.loss[s], fit, W[:, s], progress=progress)
    rstar = None
    if with_rstar:
        m = np.flatnonzero(~single)
        rstar = np.empty((n_boot, 2))
        for i in range(0, n_boot, CHUNK):
            sl = slice(i, i + CHUNK)
            rstar[sl], _ = fit_rstar_batch(
                eq4[sl],
                table.N[m],
                table.D[m],
                table.U[m],
                table.loss[m],
                W[sl][:, m],
                huber_delta=fit.huber_delta,
            )
            progress and progress.update(len(eq4[sl]))
    return TwoStage(W, eq4, rstar)


def percentile_ci(samples: np.ndarray, names=PARAM_NAMES) -> dict[str, list[float]]:
    """2.5th and 97.5th percentiles per column."""
    lo, hi = np.percentile(samples, [2.5, 97.5], axis=0)
    return {k: [float(lo[i]), float(hi[i])] for i, k in enumerate(names)}
