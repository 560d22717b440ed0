"""Synthetic runs from known constants (tests, the bench stage, docs examples).

The grid mimics the paper's (Section 3.3.2): the five Table 1 sizes (non-embedding N), D/N in
{2, 4, ..., 128} single-epoch, plus multi-epoch runs at 2, 4, 8, 10 epochs.  Losses follow the
paper's two-stage model: Eq. 4 for single-epoch runs (the law the first stage fits to them) and
Eq. 7/8 for multi-epoch runs (the law the second stage fits), times log-normal noise.  (Eq. 8
also shrinks the parameters of an oversized *single-epoch* model, N > U_N; generating those
runs with Eq. 7 would make data that Eq. 4 cannot recover.)  Curves sample each single-epoch
run at ten points along its tokens with the Eq. 4 loss at the tokens seen; metrics are linear
in the loss below a plateau.
"""

from __future__ import annotations

import numpy as np

from slmscale.laws import data_constrained as dc
from slmscale.laws.chinchilla import ChinchillaParams
from slmscale.laws.flops import six_nd

PAPER_N = (20.4e6, 84.9e6, 154.2e6, 308.4e6, 822.1e6)
PAPER_RATIOS = (2, 4, 8, 16, 32, 64, 128)
PAPER_EPOCHS = (2, 4, 8, 10)
# metric = clip(slope * loss + intercept, floor, plateau); made-up but speech-like.
METRIC_LINES = {"sblimp_acc": (-0.08, 0.78, 0.5, 0.62), "story_cloze_acc": (-0.1, 0.85, 0.5, 0.6)}


def synthetic_runs(
    law: ChinchillaParams,
    *,
    sizes=PAPER_N,
    ratios=PAPER_RATIOS,
    epochs=(),
    multi_ratios=(16, 64),
    R_star_N: float = 31.0,
    R_star_D: float = 25.0,
    noise: float = 0.0,
    seed: int = 0,
    tokenizer: str = "hubert25hz-k500",
    prefix: str = "run",
) -> tuple[dict[str, list], dict[str, list]]:
    """(runs columns, curves columns) for the grid sizes x ratios (+ sizes x multi_ratios x epochs)."""
    rng = np.random.default_rng(seed)
    rows = [(n, r * n, r * n) for n in sizes for r in ratios]
    rows += [(n, r * n, r * n / e) for n in sizes for r in multi_ratios for e in epochs]
    N, D, U = (np.array(x, float) for x in zip(*rows, strict=True))
    single = U >= D
    L = np.where(single, law.predict(N, D), dc.predict(law, N, D, U, R_star_N, R_star_D))
    L = L * np.exp(rng.normal(0.0, noise, N.size))
    run_ids = [f"{prefix}{i:03d}" for i in range(N.size)]
    runs = {
        "run_id": run_ids,
        "params": N.tolist(),
        "tokens": D.tolist(),
        "unique_tokens": U.tolist(),
        "loss": L.tolist(),
        "tokenizer": [tokenizer] * N.size,
    }
    for m, (slope, icpt, floor, plateau) in METRIC_LINES.items():
        runs[m] = np.clip(slope * L + icpt, floor, plateau).tolist()
    curves: dict[str, list] = {"run_id": [], "tokens": [], "flops": [], "test_loss": []}
    for rid, n, d, u in zip(run_ids, N, D, U, strict=True):
        if u < d:
            continue
        t = d * np.linspace(0.1, 1.0, 10)
        curves["run_id"] += [rid] * t.size
        curves["tokens"] += t.tolist()
        curves["flops"] += six_nd(n, t).tolist()
        curves["test_loss"] += (law.predict(n, t) * np.exp(rng.normal(0, noise, t.size))).tolist()
    return runs, curves
