"""Bootstrap over runs: deterministic, pool-independent, intervals around the estimate."""

from __future__ import annotations

import numpy as np

from slmscale.laws.bootstrap import bootstrap_chinchilla, percentile_ci, resample_weights
from slmscale.laws.chinchilla import ChinchillaParams, fit_chinchilla
from slmscale.laws.synthetic import synthetic_runs
from slmscale.paper import SPEECH_LAW


def test_resample_counts_runs():
    w = resample_weights(10, 7, seed=1)
    assert w.shape == (7, 10) and np.all(w.sum(axis=1) == 10)
    assert np.array_equal(w, resample_weights(10, 7, seed=1))


def test_bootstrap_is_deterministic_and_brackets_the_fit():
    runs, _ = synthetic_runs(ChinchillaParams.from_dict(SPEECH_LAW), noise=0.005, seed=2)
    N, D, L = (np.array(runs[k]) for k in ("params", "tokens", "loss"))
    fit = fit_chinchilla(N, D, L)
    a = bootstrap_chinchilla(N, D, L, fit, n_boot=24, seed=5)
    b = bootstrap_chinchilla(N, D, L, fit, n_boot=24, seed=5)
    assert a.shape == (24, 5) and np.array_equal(a, b)
    ci = percentile_ci(a)
    assert ci["E"][0] <= fit.params.E * 1.02 and fit.params.E * 0.98 <= ci["E"][1]
    assert ci["beta"][0] < ci["beta"][1]
