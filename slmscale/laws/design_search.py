"""Leaner grids and the next runs to train, judged by simulated studies (`design.py`).

`grid_variants` builds leaner grids (drop a size, a budget, a block of extra runs; halve the
largest size's budgets); `propose_next` picks the next runs that most narrow the extrapolation
interval per unit of cost, greedily, by simulation and warm-started refits (as the bootstrap
does).  Pure core.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from slmscale import paper
from slmscale.errors import UserError
from slmscale.laws import simulate
from slmscale.laws.design import Point, Prior, extrapolation_error, simulate_points


def halved(p: Point, available_tokens: float | None) -> Point:
    """The run with half its tokens: U_D follows the epochs rule (auto: min(D, data))."""
    D = p.D / 2.0
    if p.epochs == "auto":
        U = min(D, available_tokens) if available_tokens else D
    else:
        U = p.U / 2.0
    ratio = p.ratio / 2.0 if p.ratio is not None else None
    return replace(p, D=D, U=U, cost=p.cost / 2.0, key="", ratio=ratio)


def grid_variants(
    points: Sequence[Point], available_tokens: float | None = None
) -> list[tuple[str, list[Point]]]:
    """The grid and its leaner variants: drop each size, each main-grid budget, each extra
    block; halve the budgets of the largest size."""
    points = list(points)
    out = [("full grid", points)]
    names: dict[float, str] = {}
    for p in points:
        names[p.N] = names.get(p.N) or p.size
    sizes = sorted(names.items())
    if len(sizes) > 1:
        for n, name in sizes:
            out.append((f"drop {name or f'N={n:.3g}'}", [p for p in points if p.N != n]))
    ratios = sorted({p.ratio for p in points if p.group == "main" and p.ratio is not None})
    if len(ratios) > 1:
        for r in ratios:
            out.append(
                (f"drop D/N={r:g}", [p for p in points if not (p.group == "main" and p.ratio == r)])
            )
    for g in sorted({p.group for p in points} - {"main"}):
        out.append((f"drop {g}", [p for p in points if p.group != g]))
    n_max, name_max = sizes[-1]
    out.append(
        (
            f"halve {name_max or 'largest size'} budgets",
            [halved(p, available_tokens) if p.N == n_max else p for p in points],
        )
    )
    return out


def propose_next(
    baseline: Sequence[Point],
    candidates: Sequence[Point],
    prior: Prior,
    *,
    k: int,
    n_sims: int,
    seed: int,
    target_flops: float,
    huber_delta: float = paper.HUBER_DELTA,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Greedily pick up to k candidates that most narrow the extrapolation interval per cost.

    Each round refits every simulation once per candidate (baseline + that run), warm-started
    from the baseline's refit of the same simulation; the chosen run joins the baseline, which
    is refitted from the full start grid.  Only single-epoch runs move Eq. 4, hence the
    extrapolated loss: multi-epoch candidates are not scored (they inform R* only).
    """
    base = [p for p in baseline if p.single]
    pool = [c for c in candidates if c.single]
    if len(base) < 5:
        raise UserError(f"{len(base)} single-epoch run(s) to start from: Eq. 4 needs at least 5")
    truths = prior.draws(n_sims, seed)

    def refit(pts, warm=None):
        N, D = (np.array([getattr(p, a) for p in pts]) for a in "ND")
        _, L = simulate_points(prior, pts, n_sims, seed)
        theta, _ = simulate.refit_eq4(N, D, L, huber_delta, warm)
        return theta, extrapolation_error(theta, truths, target_flops)["width"]

    theta, width = refit(base)
    start_width = width
    chosen = []
    for _ in range(k):
        scored = []
        for c in pool:
            _, w_c = refit([*base, c], theta[:, None, :])
            gain = width - w_c
            scored.append((gain / c.cost if c.cost > 0 else gain, gain, w_c, c))
            progress and progress(1)
        good = [s for s in scored if np.isfinite(s[1]) and s[1] > 0]
        if not good:
            break
        best = max(good, key=lambda s: s[0])
        _, gain, w_c, c = best
        chosen.append(
            {
                "point": c,
                "width_before": float(width),
                "width_after": float(w_c),
                "gain": float(gain),
                "gain_per_cost": float(best[0]),
            }
        )
        base.append(c)
        pool = [p for p in pool if p is not c]
        theta, width = refit(base)
    return {"start_width": float(start_width), "end_width": float(width), "chosen": chosen}
