"""95% intervals of every number of the study, from one bootstrap over runs.

`add_intervals(study, ...)` runs `bootstrap.bootstrap_two_stage` (Eq. 4, then R* with each
replicate's Eq. 4) and recomputes, per replicate and from that replicate's runs:
- G, a, b of Eq. 6 from its Eq. 4 constants;
- the loss envelope exponent (Figure 1) from the eval points of the runs it drew;
- gamma_q of each benchmark (raw, above chance, error rate; `gamma.gamma_q`) from its runs;
- the text reference's gamma_q from a resample of whole models (independent draws, seed + 1),
  and the speech/text ratios replicate by replicate;
- the loss-to-metric lines (for the planner's metric intervals).

Intervals are Efron's bias-corrected percentile intervals around the full-data estimates
(`gamma.interval`).  Interval keys in fit.json `ci95`: the constants by name (E ... R_star_D, G, a, b),
`envelope_gamma`, and per metric m: `gamma_q.m`, `gamma_q_error.m`, `gamma_q_text.m`,
`gamma_q_text_error.m`, `ratio.m`, `ratio_error.m` (text / speech).
"""

from __future__ import annotations

import numpy as np

from slmscale.laws.bootstrap import bootstrap_two_stage, resample_weights
from slmscale.laws.chinchilla import PARAM_NAMES
from slmscale.laws.data_constrained import LOG10_RSTAR_RANGE
from slmscale.laws.downstream import linear_samples
from slmscale.laws.gamma import gamma_q, interval
from slmscale.laws.powerlaw import envelope_gammas

RSTAR_BOX = tuple(10.0**x for x in LOG10_RSTAR_RANGE)
GAMMA_KEYS = {
    "raw": ("gamma_q", "gamma_q_text", "ratio"),
    "error_rate": ("gamma_q_error", "gamma_q_text_error", "ratio_error"),
}


def eq6_samples(eq4: np.ndarray) -> dict[str, np.ndarray]:
    """G, a, b of Eq. 6 for each row (E, A, B, alpha, beta)."""
    _, A, B, al, be = eq4.T
    s = al + be
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return {"G": (al * A / (be * B)) ** (1.0 / s), "a": be / s, "b": al / s}


def law_samples(eq4: np.ndarray, rstar: np.ndarray | None) -> dict[str, np.ndarray]:
    """Bootstrap samples of the law's constants by name: Eq. 4, R* (if any), G, a, b."""
    out = {k: eq4[:, i] for i, k in enumerate(PARAM_NAMES)}
    if rstar is not None:
        out["R_star_N"], out["R_star_D"] = rstar[:, 0], rstar[:, 1]
    out.update(eq6_samples(eq4))
    return out


def law_intervals(samples: dict, estimates: dict, n_single: int, n_multi: int) -> dict:
    """95% intervals of the law's constants: `gamma.interval`, bias-corrected and widened for
    degrees of freedom: Eq. 4 and Eq. 6 constants by n_single runs and 5 fitted constants; R*
    by the larger of that and (n_multi runs, 2 constants), since R*'s spread is mostly the
    Eq. 4 spread it inherits (R*_N moves with alpha through U_N)."""
    out = {}
    eq4 = (n_single, 5)
    rstar = eq4 if n_single * (n_multi - 2) < n_multi * (n_single - 5) else (n_multi, 2)
    for k, v in samples.items():
        out[k] = interval(v, estimates.get(k), rstar if k.startswith("R_star") else eq4)
        if k.startswith("R_star") and out[k][0] is not None:  # the widening stops at the box
            out[k] = [float(np.clip(x, *RSTAR_BOX)) for x in out[k]]
    return out


def _run_index(study) -> dict[str, int]:
    return {r: i for i, r in enumerate(study.table.run_id)}


def add_intervals(study, *, n_boot: int, seed: int, progress=None) -> dict[str, np.ndarray]:
    """Fill `study.doc` ci95 / bootstrap / per-metric intervals; returns the raw samples."""
    doc = study.doc
    with_rstar = study.data_constrained is not None
    ts = bootstrap_two_stage(
        study.table,
        study.chinchilla,
        n_boot=n_boot,
        seed=seed,
        with_rstar=with_rstar,
        progress=progress,
    )
    samples = law_samples(ts.eq4, ts.rstar)
    p = study.chinchilla.params
    point = law_samples(np.array([[p.E, p.A, p.B, p.alpha, p.beta]]), None)
    est = {k: float(v[0]) for k, v in point.items()}
    if with_rstar:
        est["R_star_N"] = study.data_constrained.R_star_N
        est["R_star_D"] = study.data_constrained.R_star_D
    n_single = int(np.count_nonzero(study.table.single_epoch))
    n_multi = len(study.table) - n_single
    doc["ci95"].update(law_intervals(samples, est, n_single, n_multi))
    other: dict[str, tuple] = {}  # key -> (samples, estimate, dof)
    W = ts.weights  # (B, table runs)

    env = study.envelope
    if env["law"] is not None:
        idx = _run_index(study)
        groups = np.array([idx[str(r)] for r in env["run_id"]], int)
        g_env = envelope_gammas(env["C"], env["L"], groups, W)
        other["envelope_gamma"] = (g_env, env["law"].gamma, (n_single, 2))

    Wt = None
    for m, d in study.downstream.items():
        rows = d["rows"]
        if d.get("linear") is not None:
            d["linear_samples"] = linear_samples(d["loss"], d["y"], d["linear"], W[:, rows])
        if d["at_chance"]:
            continue
        g = gamma_q(
            d["C"], d["y"], groups=np.arange(len(rows)), weights=W[:, rows], chance=d["chance"]
        )
        ref = study.reference.get(m)
        gt = None
        if ref is not None and not ref["at_chance"]:
            if Wt is None or Wt.shape[1] != ref["n_groups"]:
                Wt = resample_weights(ref["n_groups"], n_boot, seed + 1)
            gt = gamma_q(ref["C"], ref["y"], groups=ref["groups"], weights=Wt, chance=ref["chance"])
        for transform, (ks, kt, kr) in GAMMA_KEYS.items():
            e_s = d["gamma_q"][transform]["gamma"][0]
            other[f"{ks}.{m}"] = (g[transform]["gamma"], e_s, (len(rows), 2))
            if gt is None:
                continue
            e_t = ref["gamma_q"][transform]["gamma"][0]
            other[f"{kt}.{m}"] = (gt[transform]["gamma"], e_t, (ref["n_groups"], 2))
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = gt[transform]["gamma"] / g[transform]["gamma"]
            other[f"{kr}.{m}"] = (ratio, e_t / e_s if e_s else None, None)
        d["gamma_q_samples"] = {t: g[t]["gamma"] for t in g}

    for k, (v, e, dof) in other.items():
        doc["ci95"][k] = interval(v, e, dof)
    cols = list(PARAM_NAMES) + (["R_star_N", "R_star_D"] if with_rstar else [])
    doc["bootstrap"] = {
        "n": n_boot,
        "seed": seed,
        "resample": "runs with replacement, single-epoch and multi-epoch runs each within their "
        "group; both stages refitted per replicate (Eq. 4, then R* with that replicate's Eq. 4); "
        "text reference: whole models with all their checkpoints",
        "interval": "bias-corrected percentile, widened by sqrt(n / (n - p)) about the estimate "
        "(n runs, p fitted constants)",
        "columns": cols,
        "samples": np.column_stack([samples[k] for k in cols]),
        "linear": {
            m: d["linear_samples"] for m, d in study.downstream.items() if "linear_samples" in d
        },
    }
    return samples
