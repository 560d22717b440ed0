"""gamma_q of Table 3: one definition, applied identically to speech runs and text checkpoints.

Definition (what `gamma_q` computes, for either modality):
1. Points: one per evaluated model state: (compute C, accuracy).  Speech: each run's final
   scores at C = 6 N D.  Text: each checkpoint of each model at C = 6 N tokens_seen.
2. Envelope: the frontier of maximal accuracy per FLOP (a point is on it when no point with at
   most its compute scores higher), as in the paper's Figure 2.
3. Transform of the metric, each its own exponent:
   - `raw`: Q = accuracy, Q ~ C^gamma (the paper's Table 3);
   - `above_chance`: Q = accuracy - chance (points at or below chance are left out);
   - `error_rate`: Q = 1 - accuracy, Q ~ C^-gamma (gamma reported positive: the rate at which
     errors fall).
   Raw accuracy starts at chance, so its log-log slope shrinks as accuracy rises: the same
   model family looks slower the better its first checkpoint is.  The error rate does not
   have that bias.
4. Pre-saturation rule: along the envelope (in order of compute), the last k points may be a
   plateau.  For each k the envelope is fitted as a line in (log C, log Q) up to the break and
   a constant after it, against one line through all; the split with the lowest BIC,
   n log(SSE/n) + p log n with p = 2 (one line) or p = 4 (line, plateau, break), wins.  It is
   the criterion `downstream.fit_linear_relation` uses for the loss-to-metric plateau.
5. gamma is the least-squares slope over the pre-saturation envelope, which must keep at least
   3 points (fewer: no exponent).

Uncertainty: the bootstrap resamples whole runs (speech) or whole models with all their
checkpoints (text), recomputes the envelope and the rule, and refits; vectorised over
replicates (`weights` is (B, n_groups) draw counts).

A benchmark whose best point does not beat chance by `AT_CHANCE_MARGIN` is "at chance": it
has no exponent (a slope of noise is not a scaling law).
"""

from __future__ import annotations

import numpy as np

TRANSFORMS = ("raw", "above_chance", "error_rate")
# Every benchmark scored here is a two-way choice (sBLIMP, sWUGGY, StoryCloze, TopicCloze pairs).
CHANCE = {
    "sblimp_acc": 0.5,
    "swuggy_acc": 0.5,
    "story_cloze_acc": 0.5,
    "topic_cloze_acc": 0.5,
    "blimp_acc": 0.5,
}
AT_CHANCE_MARGIN = 0.02
MIN_LINE_POINTS = 3  # a slope through two envelope points is not a scaling law
DEFINITION = (
    "gamma_q: least-squares slope of log Q on log C over the envelope of maximal accuracy per "
    "FLOP (at least 3 points), before saturation (the last envelope points are a plateau when line + plateau beats "
    "one line by BIC, the rule of the loss-to-metric relation); Q = accuracy (raw), "
    "accuracy - chance (above chance) or 1 - accuracy (error rate, gamma = -slope); intervals "
    "resample whole runs (speech) and whole models with all their checkpoints (text)"
)


def at_chance(y, chance: float, margin: float = AT_CHANCE_MARGIN) -> bool:
    """True when no point beats chance by more than `margin` (the benchmark says nothing)."""
    y = np.asarray(y, float)
    y = y[np.isfinite(y)]
    return y.size == 0 or float(y.max()) < chance + margin


def _frontier_mask(C, y, groups, weights):
    """(B, n) frontier membership per replicate, points sorted by (C, -y)."""
    present = weights[:, groups] > 0  # (B, n)
    v = np.where(present, -y[None, :], np.inf)
    cm = np.minimum.accumulate(v, axis=1)
    prev = np.concatenate([np.full((v.shape[0], 1), np.inf), cm[:, :-1]], axis=1)
    return present & (v < prev)


def _bic(sse, n, p):
    return n * np.log(np.maximum(sse, 1e-300) / n) + p * np.log(n)


def _line_with_plateau(x, z, f):
    """Per replicate: slope over the pre-saturation envelope, #line points, #plateau points.

    x (n,), z (B, n) transformed values (finite where usable), f (B, n) frontier mask.
    """
    f = f & np.isfinite(z)
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
        sse1 = np.maximum(vzz - vxz * slope, 0.0)
        n2 = T[0] - S0
        sse2 = np.maximum((T[5] - Szz) - (T[2] - Sz) ** 2 / n2, 0.0)
        full = n1 == T[0]
        ok_line = f & (n1 >= MIN_LINE_POINTS) & (vxx > 1e-300)
        bic = np.where(full, _bic(sse1, T[0], 2), _bic(sse1 + sse2, T[0], 4))
    # A plateau needs >= 1 point; the line always keeps >= MIN_LINE_POINTS.
    valid = ok_line & (full | (n2 >= 1))
    bic = np.where(valid, bic, np.inf)
    # One line wins ties: its BIC is evaluated at the last frontier point (full).
    bic_full = np.where(valid & full, bic, np.inf).min(axis=1)
    bic_split = np.where(valid & ~full, bic, np.inf)
    j_split = bic_split.argmin(axis=1)
    rows = np.arange(f.shape[0])
    use_split = bic_split[rows, j_split] < bic_full - 1e-9
    j_full = np.where(valid & full, np.arange(f.shape[1])[None, :], -1).max(axis=1)
    j = np.where(use_split, j_split, j_full)
    good = np.isfinite(np.where(use_split, bic_split[rows, j_split], bic_full))
    out_slope = np.where(good, slope[rows, j], np.nan)
    n_line = np.where(good, n1[rows, j], 0).astype(int)
    n_plateau = np.where(good, n - n_line, 0).astype(int)
    return out_slope, n_line, n_plateau


def gamma_q(C, acc, *, groups=None, weights=None, chance: float = 0.5) -> dict:
    """Exponents of every transform (see the module docstring), one per replicate.

    `groups` (n,) are integer indices of the resampling unit of each point (run or model) into
    the columns of `weights` (B, n_groups), draw counts per group (None: the data as they are,
    B = 1).  Returns
    {transform: {"gamma": (B,), "n_frontier": (B,), "n_saturated": (B,)}}.
    """
    C, acc = np.asarray(C, float), np.asarray(acc, float)
    ok = np.isfinite(C) & (C > 0) & np.isfinite(acc)
    gidx = np.arange(C.size) if groups is None else np.asarray(groups, int)
    C, acc, gidx = C[ok], acc[ok], gidx[ok]
    n_groups = int(gidx.max()) + 1 if gidx.size else 1
    w = np.ones((1, n_groups)) if weights is None else weights
    w = np.atleast_2d(np.asarray(w, float))
    order = np.lexsort((-acc, C))
    C, acc, gidx = C[order], acc[order], gidx[order]
    f = _frontier_mask(C, acc, gidx, w)
    x = np.log(C)
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        q = {
            "raw": np.log(np.where(acc > 0, acc, np.nan)),
            "above_chance": np.log(np.where(acc > chance, acc - chance, np.nan)),
            "error_rate": np.log(np.where(acc < 1, 1.0 - acc, np.nan)),
        }
    for name in TRANSFORMS:
        z = np.broadcast_to(q[name], f.shape)
        slope, n_line, n_plat = _line_with_plateau(x, z, f)
        gamma = -slope if name == "error_rate" else slope
        out[name] = {"gamma": gamma, "n_frontier": n_line + n_plat, "n_saturated": n_plat}
    return out


def interval(samples, estimate: float | None = None, dof: tuple[int, int] | None = None):
    """95% bootstrap interval of the finite samples ([None, None] with fewer than 10).

    With the full-data `estimate`: Efron's bias-corrected percentile interval, percentiles
    Phi(2 z0 -+ 1.96) with z0 = Phi^-1(share of samples below the estimate).  Two-stage fits
    are median-biased (R*_D's replicates centre below its estimate); the plain percentile
    interval then doubles the bias, which simulation showed as under-coverage of R*_D.
    With `dof` = (n runs, p fitted constants) the interval is widened about the estimate by
    sqrt(n / (n - p)) (on the log scale for positive quantities): resampling n runs
    underestimates the variance of a p-constant fit by about (n - p) / n, the
    degrees-of-freedom correction of the paired bootstrap (35 runs, 5 constants: 8% wider).
    Without an estimate: the plain 2.5th / 97.5th percentiles.
    """
    from scipy.stats import norm

    s = np.asarray(samples, float)
    s = s[np.isfinite(s)]
    if s.size < 10:
        return [None, None]
    q = np.array([0.025, 0.975])
    has_est = estimate is not None and bool(np.isfinite(estimate))
    if has_est:
        share = (np.sum(s < estimate) + 0.5 * np.sum(s == estimate)) / s.size
        z0 = norm.ppf(np.clip(share, 1.0 / s.size, 1.0 - 1.0 / s.size))
        q = norm.cdf(2.0 * z0 + norm.ppf(q))
    lo, hi = np.percentile(s, 100.0 * q)
    if has_est and dof is not None and dof[0] > dof[1] + 1:
        c = float(np.sqrt(dof[0] / (dof[0] - dof[1])))
        if lo > 0 and estimate > 0:
            le = np.log(estimate)
            lo, hi = np.exp(le + c * (np.log(lo) - le)), np.exp(le + c * (np.log(hi) - le))
        else:
            lo, hi = estimate + c * (lo - estimate), estimate + c * (hi - estimate)
    if has_est:  # an interval that excludes its own estimate (an envelope's extreme) is widened
        lo, hi = min(lo, estimate), max(hi, estimate)
    return [float(lo), float(hi)]
