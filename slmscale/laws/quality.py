"""Fit quality for the report: residuals, R^2, and the leave-largest-size-out check.

Leave-largest-size-out: refit Eq. 4 without the runs of the largest model size, predict those
runs' losses, and report the error.  It is the honest question a scaling law answers (how well
does it extrapolate one size up?), which in-sample residuals cannot.
"""

from __future__ import annotations

import numpy as np

from slmscale.laws.chinchilla import ChinchillaParams, fit_chinchilla, r_squared


def residuals(params: ChinchillaParams, run_ids, N, D, L) -> list[dict]:
    pred = params.predict(N, D)
    return [
        {
            "run_id": r,
            "params": float(n),
            "tokens": float(d),
            "loss": float(y),
            "predicted": float(p),
            "log_residual": float(np.log(y) - np.log(p)),
        }
        for r, n, d, y, p in zip(run_ids, N, D, L, pred, strict=True)
    ]


def summary(params: ChinchillaParams, N, D, L) -> dict[str, float]:
    pred = params.predict(N, D)
    log_res = np.log(L) - np.log(pred)
    return {
        "r2": r_squared(L, pred),
        "rmse_log": float(np.sqrt(np.mean(log_res**2))),
        "max_abs_rel_error": float(np.max(np.abs(pred / L - 1.0))),
    }


def leave_largest_size_out(N, D, L, *, huber_delta: float) -> dict:
    """Refit without the largest N and score the prediction of its runs (or say why not)."""
    N, D, L = (np.asarray(x, float) for x in (N, D, L))
    sizes = np.unique(N)
    held = N == sizes[-1]
    if len(sizes) < 3 or np.count_nonzero(~held) < 5:
        return {"skipped": "needs >= 3 model sizes and >= 5 runs without the largest"}
    fit = fit_chinchilla(N[~held], D[~held], L[~held], huber_delta=huber_delta)
    pred = fit.params.predict(N[held], D[held])
    rel = pred / L[held] - 1.0
    return {
        "held_out_params": float(sizes[-1]),
        "n_held_out": int(held.sum()),
        "mean_abs_rel_error": float(np.mean(np.abs(rel))),
        "max_abs_rel_error": float(np.max(np.abs(rel))),
        "mean_rel_error": float(np.mean(rel)),
        "params_without_largest": fit.params.as_dict(),
    }
