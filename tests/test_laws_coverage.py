"""Do the fit's 95% intervals contain the truth 95% of the time?  Coverage on simulated studies.

Design (stated, as the issue asks):
- eight model sizes log-spaced over the paper's 20M-823M x D/N in {2, 4, ..., 128}
  single-epoch (56 runs), plus the 8 sizes x D/N {16, 64} x epochs {2, 4, 8, 10} multi-epoch
  (64 runs): the paper's grid with three more sizes;
- true law: Table 4's speech constants (E 1.73, A 13.9, B 39.8, alpha 0.25, beta 0.24,
  R*_N 31, R*_D 25); single-epoch losses from Eq. 4, multi-epoch from Eq. 7/8;
- noise: log-normal, sigma 0.1% of the loss (the paper's residuals are not published; at 1%
  this grid does not identify R*_N or R*_D, see `test_identification_*`);
- per simulated study: the fitter's own pieces (`fit_chinchilla`, `fit_data_constrained` for
  the R* estimate, `bootstrap_two_stage` refitting both stages, `intervals.law_intervals`),
  100 bootstrap replicates, 60 studies (seeds 1000-1059); the point fits use fewer polished
  starts and a coarser R* seed grid than `slmscale fit` (see N_POLISH), for speed.

Claim: for every constant the design identifies (by `identify.is_identified` in most studies),
the nominal 95% interval contains the true value in at least 90% of the studies.  The seeds are
fixed, so the test is deterministic.  Measured when written (2-core VM), seeds 1000-1059: E .95,
A .93, B .93, alpha .92, beta .93, R*_N .93, R*_D .95, G .95, a .93, b .93; seeds 2000-2059:
E .92, A .97, B .98, alpha .95, beta .98, R*_N .93, R*_D .97, G .95, a .95, b .95.  On the
paper's own five sizes the same procedure covers 0.90-0.95 (R*_N lowest: it inherits alpha's
spread through U_N); the old profile intervals, with Eq. 4 frozen at its estimate, covered
R*_N about 50% of the time (issue 16).
"""

from __future__ import annotations

import numpy as np
import pytest

from slmscale.laws import data_constrained as dc
from slmscale.laws.bootstrap import bootstrap_two_stage
from slmscale.laws.chinchilla import ChinchillaParams, fit_chinchilla
from slmscale.laws.identify import is_identified
from slmscale.laws.intervals import eq6_samples, law_intervals, law_samples
from slmscale.laws.synthetic import PAPER_EPOCHS, PAPER_N, synthetic_runs
from slmscale.laws.table import validate_runs
from slmscale.paper import SPEECH_LAW

LAW = ChinchillaParams.from_dict(SPEECH_LAW)
# Speed for CI: the fitter's own options, 2 polished starts instead of 8 (this design puts
# every start in one basin) and a 41 x 41 R* grid instead of 161 x 161 (the grid only seeds
# the polish; its profile is for the report's figure).
N_POLISH = 2
SIZES = tuple(np.geomspace(PAPER_N[0], PAPER_N[-1], 8))
NAMES = ("E", "A", "B", "alpha", "beta", "R_star_N", "R_star_D", "G", "a", "b")


def truth() -> dict[str, float]:
    t = dict(SPEECH_LAW)
    row = np.array([[LAW.E, LAW.A, LAW.B, LAW.alpha, LAW.beta]])
    t.update({k: float(v[0]) for k, v in eq6_samples(row).items()})
    return t


def simulate(seed: int, noise: float, n_boot: int, sizes=SIZES) -> dict[str, list]:
    """One simulated study: the 95% interval of every constant, as `slmscale fit` computes it."""
    runs, _ = synthetic_runs(LAW, sizes=sizes, epochs=PAPER_EPOCHS, noise=noise, seed=seed)
    table, _ = validate_runs(runs, f"sim{seed}")
    single, multi = table.subset(table.single_epoch), table.subset(~table.single_epoch)
    fit = fit_chinchilla(single.N, single.D, single.loss, n_polish=N_POLISH)
    rs = dc.fit_data_constrained(fit.params, multi.N, multi.D, multi.U, multi.loss, n_grid=41)
    ts = bootstrap_two_stage(table, fit, n_boot=n_boot, seed=seed, with_rstar=True)
    row = np.array([list(fit.params.as_dict().values())])
    est = {k: float(v[0]) for k, v in law_samples(row, None).items()}
    est.update(R_star_N=rs.R_star_N, R_star_D=rs.R_star_D)
    return law_intervals(law_samples(ts.eq4, ts.rstar), est, len(single), len(multi))


def coverage(seeds, noise: float, n_boot: int):
    t = truth()
    hits = dict.fromkeys(NAMES, 0)
    identified = dict.fromkeys(NAMES, 0)
    for seed in seeds:
        ci = simulate(seed, noise, n_boot)
        for k in NAMES:
            lo, hi = ci[k]
            hits[k] += lo is not None and lo <= t[k] <= hi
            identified[k] += is_identified(k, ci[k])
    n = len(seeds)
    return {k: hits[k] / n for k in NAMES}, {k for k in NAMES if identified[k] > n / 2}


@pytest.mark.slow
def test_nominal_95_intervals_cover_the_truth():
    cov, identified = coverage(range(1000, 1060), noise=0.001, n_boot=100)
    # The design identifies every constant of Eq. 4 and Eq. 7/8 at this noise ...
    assert {"E", "A", "B", "alpha", "beta", "R_star_N", "R_star_D", "a", "b"} <= identified
    # ... and the intervals are calibrated for each of them (both stages refitted per
    # replicate: with Eq. 4 frozen, R*_N's intervals covered 50% of the time).
    low = {k: c for k, c in cov.items() if k in identified and c < 0.9}
    assert not low, (low, cov)


def test_identification_is_read_from_intervals_not_r2():
    # The paper's five sizes at 1% noise: Eq. 4 still fits with R^2 ~0.98, but R*_N's and G's
    # intervals span orders of magnitude; the rule must say so, and still accept beta.
    ci = simulate(7, noise=0.01, n_boot=60, sizes=PAPER_N)
    assert not is_identified("R_star_N", ci["R_star_N"])
    assert not is_identified("G", ci["G"])
    assert not is_identified("A", ci["A"])
    assert is_identified("beta", ci["beta"])
