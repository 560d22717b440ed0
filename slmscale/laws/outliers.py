"""Outliers: runs whose loss the fitted law misses by far more than it misses the others.

A MAD rule on the log-loss residuals of the point fit (Eq. 4 for single-epoch runs, Eq. 7/8 for
multi-epoch ones): z = (r - median r) / (1.4826 MAD), the robust z-score (1.4826 MAD estimates
a standard deviation under normal noise, and one wild run cannot inflate it as it inflates the
RMSE).  |z| > `Z_MAX` (5) flags a run: under normal noise that happens to one run in ~1.7
million, while a loss logged 10x too high at 1% noise sits at z ~ 230.  Flagged runs are
excluded from the fit by default (the fit is then redone) and always named with their residual.
"""

from __future__ import annotations

import numpy as np

Z_MAX = 5.0
MAD_TO_SD = 1.4826
RULE = (
    f"|log-loss residual - median| > {Z_MAX:g} x 1.4826 MAD of the residuals (a robust z-score "
    f"above {Z_MAX:g})"
)


def flag(run_ids, log_residuals, *, z_max: float = Z_MAX, min_runs: int = 8) -> list[dict]:
    """[{"run_id", "log_residual", "mad_z", "reason"}] of the runs beyond `z_max` robust sds.

    Fewer than `min_runs` residuals, or a MAD of zero (a noise-free table), flag nothing.
    """
    r = np.asarray(log_residuals, float)
    ok = np.isfinite(r)
    if ok.sum() < min_runs:
        return []
    med = float(np.median(r[ok]))
    mad = MAD_TO_SD * float(np.median(np.abs(r[ok] - med)))
    if not mad > 0:
        return []
    z = (r - med) / mad
    out = []
    for rid, ri, zi in zip(run_ids, r, z, strict=True):
        if np.isfinite(zi) and abs(zi) > z_max:
            factor = float(np.exp(ri))
            out.append(
                {
                    "run_id": rid,
                    "log_residual": float(ri),
                    "mad_z": float(zi),
                    "reason": f"outlier: loss {factor:.3g}x the fitted law's (robust z {zi:+.1f}, "
                    f"beyond {z_max:g})",
                }
            )
    return out
