"""Envelopes (Figure 1, 2), power laws, the loss-to-metric relation, the text reference."""

from __future__ import annotations

import numpy as np
import pytest

from slmscale.laws.downstream import fit_linear_relation
from slmscale.laws.powerlaw import envelope_law, fit_power_law, frontier
from slmscale.laws.reference import load_reference, reference_envelopes


def test_frontier_of_hand_made_curves():
    # Two runs: a small model (cheap, plateaus at 3.0) and a big one (starts worse, ends better).
    C = np.array([1, 2, 4, 8, 2, 4, 8, 16, 32], float)
    L = np.array([5.0, 4.0, 3.0, 3.0, 6.0, 3.5, 2.5, 2.0, 1.5])
    idx = frontier(C, L)
    # C=1 (5.0), C=2: 4.0 beats 6.0, C=4: 3.0 beats 3.5, C=8: 2.5 (big model), 16, 32.
    assert idx.tolist() == [0, 1, 2, 6, 7, 8]
    # The small model's C=8 point (3.0) is dominated; maximize flips the question.
    assert frontier(C, -L, maximize=True).tolist() == idx.tolist()
    # NaN and non-positive compute are ignored.
    assert frontier([0, np.nan, 1], [1.0, 0.5, 2.0]).tolist() == [2]


def test_power_law_is_exact_on_a_power_law():
    C = np.geomspace(1e15, 1e21, 13)
    law = fit_power_law(C, 40.0 * C**-0.05)
    assert law.gamma == pytest.approx(-0.05, abs=1e-12)
    assert law.k == pytest.approx(40.0, rel=1e-9)
    assert law.inverse(law(1e18)) == pytest.approx(1e18, rel=1e-9)
    idx, law2 = envelope_law(C, 40.0 * C**-0.05)
    assert len(idx) == 13 and law2.gamma == pytest.approx(-0.05)
    with pytest.raises(ValueError):
        fit_power_law([1.0, 1.0], [2.0, 3.0])


def test_linear_relation_finds_the_plateau():
    loss = np.linspace(1.8, 3.0, 25)
    metric = np.minimum(0.9 - 0.2 * loss, 0.9 - 0.2 * 2.2)  # saturates below loss 2.2
    rel = fit_linear_relation(loss, metric)
    assert rel.slope == pytest.approx(-0.2, rel=1e-9)
    assert rel.pearson_r == pytest.approx(-1.0)
    assert rel.n_saturated == 8  # losses 1.8 .. 2.15 (8 points) sit on the plateau
    assert rel.loss_min == pytest.approx(2.2)
    assert rel.plateau == pytest.approx(0.46)


def test_linear_relation_without_plateau_uses_every_run():
    rng = np.random.default_rng(0)
    loss = np.linspace(2.0, 3.0, 30)
    metric = 1.0 - 0.15 * loss + rng.normal(0, 0.002, 30)
    rel = fit_linear_relation(loss, metric)
    assert rel.n_saturated == 0 and rel.n_points == 30 and rel.plateau is None
    assert rel.slope == pytest.approx(-0.15, rel=0.05)
    assert fit_linear_relation([2.0, 2.1], [0.5, 0.6]) is None


def test_pythia_reference_is_vendored_with_blimp_only():
    label, cols = load_reference()
    # 16 models x 15 checkpoints, less the two 12B models the paper leaves out (Section 3.1).
    assert "Pythia" in label and "12B left out" in label and len(cols["blimp_acc"]) == 210
    assert not any(m.startswith("pythia-12b") for m in cols["model"])
    env = reference_envelopes(cols)
    assert set(env) == {"sblimp_acc"}
    law = env["sblimp_acc"]["law"]
    assert 0 < law.gamma < 0.1  # accuracy rises slowly with compute
    C = env["sblimp_acc"]["C"]
    assert C[0] == pytest.approx(6 * 1208602624 * 6291456000)
    assert env["sblimp_acc"]["n_groups"] == 14
    # The first checkpoint (~7e17 FLOPs) already scores > 0.7: raw accuracy's log slope is
    # small, the error rate's is not; both come from the same function as the speech side.
    g = env["sblimp_acc"]["gamma_q"]
    assert 0 < g["raw"]["gamma"][0] < g["error_rate"]["gamma"][0]
    assert C.min() == pytest.approx(7.1e17, rel=0.01)
