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
4. Pre-saturation rule (`plateau.line_then_plateau`, the one the loss-to-metric relation uses):
   along the envelope (in order of compute), the last k points may be a plateau; a line in
   (log C, log Q) before it against one line through all, by BIC.
5. gamma is the least-squares slope over the pre-saturation envelope, which must keep at least
   3 points (fewer: no exponent).

Uncertainty: the bootstrap resamples whole runs (speech) or whole models with all their
checkpoints (text), recomputes the envelope and the rule, and refits; vectorised over
replicates (`weights` is (B, n_groups) draw counts).

A benchmark at chance (`chance.chance_test`: its best run does not beat chance by a binomial
test on its item count) has no exponent (a slope of noise is not a scaling law).
"""

from __future__ import annotations

import numpy as np

from slmscale.laws.chance import chance_test
from slmscale.laws.plateau import line_then_plateau
from slmscale.laws.powerlaw import frontier_mask

TRANSFORMS = ("raw", "above_chance", "error_rate")
# Every benchmark scored here is a two-way choice (sBLIMP, sWUGGY, StoryCloze, TopicCloze pairs).
CHANCE = {
    "sblimp_acc": 0.5,
    "swuggy_acc": 0.5,
    "story_cloze_acc": 0.5,
    "topic_cloze_acc": 0.5,
    "blimp_acc": 0.5,
}
DEFINITION = (
    "gamma_q: least-squares slope of log Q on log C over the envelope of maximal accuracy per "
    "FLOP (at least 3 points), before saturation (the last envelope points are a plateau when line + plateau beats "
    "one line by BIC, the rule of the loss-to-metric relation); Q = accuracy (raw), "
    "accuracy - chance (above chance) or 1 - accuracy (error rate, gamma = -slope); intervals "
    "resample whole runs (speech) and whole models with all their checkpoints (text)"
)


def at_chance(y, chance: float) -> bool:
    """The margin rule for tables without item counts (`chance.chance_test`, count unknown)."""
    return bool(chance_test(y, chance, None)["at_chance"])


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
    f = frontier_mask(C, acc, w[:, gidx] > 0, maximize=True)
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
        slope, _, n_line, n_plat = line_then_plateau(x, z, f)
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
    from scipy.special import ndtr, ndtri  # the normal cdf and its inverse (not scipy.stats)

    s = np.asarray(samples, float)
    s = s[np.isfinite(s)]
    if s.size < 10:
        return [None, None]
    q = np.array([0.025, 0.975])
    has_est = estimate is not None and bool(np.isfinite(estimate))
    if has_est:
        share = (np.sum(s < estimate) + 0.5 * np.sum(s == estimate)) / s.size
        z0 = ndtri(np.clip(share, 1.0 / s.size, 1.0 - 1.0 / s.size))
        q = ndtr(2.0 * z0 + ndtri(q))
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
