"""How well finished runs identify the law: the report's section (simulated studies at the fit).

`slmscale fit` makes this check itself (`intervals.parametric`) and stores it in fit.json's
`identification`; `identification_blocks` renders that, or, for a fit.json without it (an older
fit, or `--bootstrap 0`), runs the same simulation here with `design.evaluate_grid`: the fitted
law as a point prior, its measured noise (`design.fit_noise`), exactly the runs it used.
"""

from __future__ import annotations

import numpy as np

from slmscale import paper
from slmscale.laws.design import RULE, GridResult, Point, evaluate_grid, fit_noise, prior_from_fit

REPORT_SIMS = 100


def identification_of_fit(
    doc: dict, single, multi=None, *, n_sims: int = REPORT_SIMS, seed: int = 0
) -> GridResult:
    """How well the finished runs identify each constant, by the design simulation.

    The true law is the fit itself (a point prior at its constants, its measured noise:
    `fit_noise`) and the grid is the runs it used (`single`, and `multi` for Eq. 7/8: anything
    with N, D, U arrays); the target compute is 100 x the largest run.  fit.json's
    `identification` holds the same check made by `slmscale fit` (`intervals.parametric`).
    """
    prior = prior_from_fit(doc, "the fit")
    prior.samples = None
    points = [Point(float(n), float(d), float(d)) for n, d in zip(single.N, single.D, strict=True)]
    with_rstar = multi is not None and len(multi.N) > 0 and "R_star_N" in doc.get("params", {})
    if with_rstar:
        points += [
            Point(float(n), float(d), float(u))
            for n, d, u in zip(multi.N, multi.D, multi.U, strict=True)
        ]
    target = 100.0 * max(p.flops for p in points)
    return evaluate_grid(
        "finished runs",
        points,
        prior,
        n_sims=n_sims,
        seed=seed,
        target_flops=target,
        with_rstar=with_rstar,
        huber_delta=float(doc.get("huber_delta") or paper.HUBER_DELTA),
    )


def _g(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if np.isfinite(v) else ("inf" if v > 0 else "-inf")


def identification_blocks(doc: dict, single, multi=None, *, n_sims: int = REPORT_SIMS) -> list:
    """Report blocks (heading, paragraphs, table): fit.json's `identification` when the fit
    made it, else the same simulation run here (`identification_of_fit`)."""
    ident = doc.get("identification")
    if ident:
        consts, ex, n = ident["constants"], ident["extrapolation"], ident["n_sims"]
        noise = (ident.get("noise") or {}).get("sigma")
        how = (ident.get("noise") or {}).get("source", "")
    else:
        res = identification_of_fit(doc, single, multi, n_sims=n_sims)
        consts, ex, n = res.constants, res.extrapolation, n_sims
        noise, how = fit_noise(doc)
    est = {k: v.get("estimate") for k, v in (doc.get("verdicts") or {}).items()}
    rows = []
    for k, c in consts.items():
        iv = c.get("interval")
        ok = iv and iv[0] is not None and iv[1] is not None
        factor = iv[1] / iv[0] if ok and iv[0] > 0 else None
        centre = est.get(k, c.get("center"))
        shown = f"[{_g(iv[0])}, {_g(iv[1])}]" if ok else c.get("reason", "-")
        edge = "-" if c.get("at_bounds") is None else f"{100 * c['at_bounds']:.0f}%"
        rows.append([k, _g(centre), shown, _g(factor), edge, "yes" if c["identified"] else "no"])
    missing = [k for k, c in consts.items() if not c["identified"]]
    verdict = (
        f"Not identified by these runs: {', '.join(missing)}."
        if missing
        else "Every constant is identified by these runs."
    )
    iv = ex.get("interval") or [None, None]
    return [
        ("h2", "How well these runs identify the law (simulated studies)"),
        (
            "p",
            f"{n} studies simulated on exactly these runs (N, D, U_D), losses drawn from the "
            f"fitted law with log-normal noise of sigma {_g(noise)} ({how}), each refitted as "
            "`slmscale fit` fits; the interval is that of the refits (`slmscale design`, "
            f"docs/design.md). Identified: {RULE}. {verdict} fit.json's verdicts need this and "
            "the bootstrap over runs to agree.",
        ),
        (
            "table",
            ["constant", "fitted", "95% interval of refits", "hi / lo", "on edge", "identified"],
            rows,
        ),
        (
            "p",
            f"Extrapolated compute-optimal loss at C = {ex['target_flops']:.3g} FLOPs (100 x the "
            f"largest run): 95% of refits within [{_g(iv[0] and 100 * iv[0])}%, "
            f"{_g(iv[1] and 100 * iv[1])}%] of the true loss.",
        ),
    ]
