"""The pre-saturation rule: a line, then a plateau, chosen by BIC (one rule for the house).

Used by the loss-to-metric relation (`downstream`, Figure 4: the lowest-loss runs may plateau)
and by gamma_q (`gamma`, Table 3: the last envelope points along compute may plateau).  Points in
order; for every split that leaves the last k points as a plateau (k >= 1, the line keeping at
least `MIN_LINE_POINTS`), a least-squares line through the first ones and a constant through the
plateau, against one line through all; the lowest BIC, n log(SSE / n) + p log n, with p = 2 (one
line) or p = 4 (line, plateau, break) wins, and one line wins ties.  So a plateau is declared only
when it explains the points clearly better than one line.  Vectorised over replicates (rows).
"""

from __future__ import annotations

import numpy as np

MIN_LINE_POINTS = 3  # a slope through two points is not a law


def bic(sse, n, p):
    """n log(SSE / n) + p log n (elementwise)."""
    return n * np.log(np.maximum(sse, 1e-300) / n) + p * np.log(n)


def line_then_plateau(x, z, f):
    """Per row: (slope, intercept, points on the line, points on the plateau).

    x (n,) in order, z (B, n) values (finite where usable), f (B, n) which points each row uses.
    Rows without a usable line get NaN slope and intercept and 0 points.
    """
    f = np.atleast_2d(f) & np.isfinite(z)
    zf = np.where(f, z, 0.0)
    xf = np.where(f, x[None, :], 0.0)
    S0, Sx, Sz = (np.cumsum(a, axis=1) for a in (f.astype(float), xf, zf))
    Sxx, Sxz, Szz = (np.cumsum(a, axis=1) for a in (xf * xf, xf * zf, zf * zf))
    T = [a[:, -1:] for a in (S0, Sx, Sz, Sxx, Sxz, Szz)]
    n = T[0][:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        n1 = S0
        vxx = Sxx - Sx * Sx / n1
        vxz = Sxz - Sx * Sz / n1
        vzz = Szz - Sz * Sz / n1
        slope = vxz / vxx
        icpt = (Sz - slope * Sx) / n1
        sse1 = np.maximum(vzz - vxz * slope, 0.0)
        n2 = T[0] - S0
        sse2 = np.maximum((T[5] - Szz) - (T[2] - Sz) ** 2 / n2, 0.0)
        full = n1 == T[0]
        ok_line = f & (n1 >= MIN_LINE_POINTS) & (vxx > 1e-300)
        score = np.where(full, bic(sse1, T[0], 2), bic(sse1 + sse2, T[0], 4))
    valid = ok_line & (full | (n2 >= 1))  # a plateau needs >= 1 point
    score = np.where(valid, score, np.inf)
    # One line wins ties: its BIC is read at the last used point (full).
    bic_full = np.where(valid & full, score, np.inf).min(axis=1)
    bic_split = np.where(valid & ~full, score, np.inf)
    j_split = bic_split.argmin(axis=1)
    rows = np.arange(f.shape[0])
    use_split = bic_split[rows, j_split] < bic_full - 1e-9
    j_full = np.where(valid & full, np.arange(f.shape[1])[None, :], -1).max(axis=1)
    j = np.where(use_split, j_split, j_full)
    good = np.isfinite(np.where(use_split, bic_split[rows, j_split], bic_full))
    out_slope = np.where(good, slope[rows, j], np.nan)
    out_icpt = np.where(good, icpt[rows, j], np.nan)
    n_line = np.where(good, n1[rows, j], 0).astype(int)
    n_plateau = np.where(good, n - n_line, 0).astype(int)
    return out_slope, out_icpt, n_line, n_plateau
