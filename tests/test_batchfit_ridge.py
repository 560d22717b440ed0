"""The house's Eq. 4 optimizer (`batchfit`) reaches scipy's L-BFGS-B optimum on the E -> 0 ridge.

On the paper's grid (Table 1 sizes x D/N 2-128) with Table 4's speech constants and 1% noise,
some draws have their optimum on the ridge where the N-term absorbs E, down to the box edge
E = e^-5.  L-BFGS-B (the bench's independent reference, `bench.fit.lbfgs_fit`) gets there;
`batchfit` stepping in log E stopped at E ~ 1 (objective up to 0.5% worse), and under
resampling it never reported E on the edge for a draw where 40% of replicates have it there: a
biased bootstrap and "E on the edge" rule.  The draws are seeded; the indices below are the ones
where the old refitter fell short (14, 17, 24 from the grid's best starts; 3 and 11 under
resampling) plus two interior ones.  `fit_chinchilla` (the point fit) and `simulate.refit_eq4`
(the design's and the parametric bootstrap's) polish with the same optimizer.
"""

import numpy as np
import pytest

from slmscale import paper
from slmscale.bench.fit import lbfgs_fit
from slmscale.laws.batchfit import best_of_starts, fit_chinchilla_batch
from slmscale.laws.bootstrap import resample_weights, warm_starts_from
from slmscale.laws.chinchilla import (
    PARAM_NAMES,
    ChinchillaParams,
    at_search_bounds,
    default_start_grid,
    fit_chinchilla,
    score_starts,
)
from slmscale.laws.simulate import refit_eq4
from slmscale.laws.synthetic import PAPER_N, PAPER_RATIOS

LAW = ChinchillaParams(*(float(paper.SPEECH_LAW[k]) for k in PARAM_NAMES))
N = np.repeat(PAPER_N, len(PAPER_RATIOS))
D = N * np.tile(PAPER_RATIOS, len(PAPER_N))
E_EDGE = np.exp(-5.0)
RIDGE = (14, 17, 24)  # draws whose optimum has E on the box edge
REL = 1e-6  # the batch may not be worse than the single fit by more than this (relative)


def _draws(n=40, seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    return np.stack([LAW.predict(N, D) * np.exp(rng.normal(0.0, noise, N.size)) for _ in range(n)])


def _grid_starts(L, n=8):
    """The starts `fit_chinchilla` polishes: the grid's best `n` by score."""
    grid = default_start_grid()
    sc = score_starts(grid, np.log(N), np.log(D), np.log(L), np.ones_like(L), paper.HUBER_DELTA)
    return grid[np.argsort(sc, kind="stable")[:n]]


@pytest.mark.parametrize("draw", [0, 1, 14, 17, 24])
def test_best_of_starts_reaches_the_single_fit_optimum(draw):
    L = _draws()[draw]
    ref = lbfgs_fit(N, D, L, _grid_starts(L))
    batch = best_of_starts(N, D, L, np.ones((1, N.size)), _grid_starts(L))
    assert batch.objective[0] <= ref.objective * (1 + REL)
    # The ridge draws end with E on the box edge by the rule `identify` applies.  (L-BFGS-B
    # stops 1e-3 short of it in log E on draw 14, within its ftol, so not its flags.)
    assert ("E" in at_search_bounds(ChinchillaParams(*batch.params[0]))) == (draw in RIDGE)
    # The point fit is the same optimizer from the same starts.
    assert fit_chinchilla(N, D, L).objective <= ref.objective * (1 + REL)


@pytest.mark.parametrize("draw", [3, 11])
def test_bootstrap_refits_reach_the_warm_started_single_fits(draw):
    L = _draws()[draw]
    fit = fit_chinchilla(N, D, L)
    warm = warm_starts_from(fit)
    W = resample_weights(L.size, 16, draw)
    batch = best_of_starts(N, D, L, W, np.array(warm))
    for w, obj in zip(W, batch.objective, strict=True):
        f = lbfgs_fit(N, D, L, warm, weights=w)
        assert obj <= f.objective * (1 + REL)


def test_rows_with_their_own_losses_match_one_fit_per_row():
    L = _draws(4, seed=7)
    starts = np.tile(_grid_starts(L[0], 1), (4, 1))
    together = fit_chinchilla_batch(N, D, L, np.ones((4, N.size)), starts)
    for i in range(4):
        alone = fit_chinchilla_batch(N, D, L[i], np.ones((1, N.size)), starts[i])
        assert together.objective[i] == pytest.approx(alone.objective[0], rel=1e-12)
        np.testing.assert_allclose(together.theta[i], alone.theta[0], rtol=1e-9, atol=1e-12)


def test_design_refits_reach_the_single_fits_with_their_own_losses():
    """Simulated studies' refits (each its own losses, one batch) on the ridge draws."""
    L = _draws()[[1, 14, 17, 24]]
    theta, obj = refit_eq4(N, D, L, paper.HUBER_DELTA)
    for i in range(len(L)):
        ref = lbfgs_fit(N, D, L[i], _grid_starts(L[i]))
        assert obj[i] <= ref.objective * (1 + REL)
        edge = at_search_bounds(ChinchillaParams.from_theta(theta[i]))
        assert ("E" in edge) == (i > 0)
