"""95% intervals and verdicts of every number of the study: two bootstraps (`verdicts.py`).

`add_intervals(study, ...)` runs
1. the bootstrap over runs, `bootstrap.bootstrap_two_stage` (Eq. 4, then R* with each
   replicate's Eq. 4), and recomputes per replicate, from that replicate's runs: G, a, b of
   Eq. 6; the loss envelope exponent (Figure 1) from the eval points of the runs it drew; gamma_q
   of each benchmark (raw, above chance, error rate; `gamma.gamma_q`); the text reference's
   gamma_q from a resample of whole models (independent draws, seed + 1) and the speech/text
   ratios; the loss-to-metric lines (for the planner's metric intervals);
2. simulated studies at the fitted law (the parametric bootstrap, `simulate.refit_studies`): the
   fit's runs, losses from the fitted Eq. 4 / Eq. 7/8 times log-normal noise of the measured
   sigma (the seed spread when there are repeats, else the residuals'), refitted by the same
   optimizers, warm-started from the point fit's optima as the runs bootstrap is.

The law's constants get the hull of both percentile intervals and a verdict each
(`verdicts.verdict`); the other numbers keep Efron's bias-corrected interval of the runs
bootstrap (`gamma.interval`) and are judged on it alone (simulation "not run").  Interval keys in
fit.json `ci95`: the constants by name (E ... R_star_D, G, a, b), `envelope_gamma`, and per
metric m: `gamma_q.m`, `gamma_q_error.m`, `gamma_q_text.m`, `gamma_q_text_error.m`, `ratio.m`,
`ratio_error.m` (text / speech).
"""

from __future__ import annotations

import numpy as np

from slmscale.laws import simulate, verdicts
from slmscale.laws.bootstrap import bootstrap_two_stage, resample_weights, warm_starts_from
from slmscale.laws.chinchilla import PARAM_NAMES
from slmscale.laws.downstream import linear_samples, link_samples
from slmscale.laws.gamma import gamma_q, interval
from slmscale.laws.powerlaw import envelope_gammas

GAMMA_KEYS = {
    "raw": ("gamma_q", "gamma_q_text", "ratio"),
    "error_rate": ("gamma_q_error", "gamma_q_text_error", "ratio_error"),
}


def law_samples(eq4: np.ndarray, rstar: np.ndarray | None) -> dict[str, np.ndarray]:
    """Bootstrap samples of the law's constants by name: Eq. 4, R* (if any), G, a, b."""
    rows = np.full((len(eq4), 7), np.nan)
    rows[:, :5] = eq4
    if rstar is not None:
        rows[:, 5:7] = rstar
    cols = simulate.with_exponents(rows)
    names = (
        verdicts.LAW_KEYS
        if rstar is not None
        else tuple(k for k in verdicts.LAW_KEYS if not k.startswith("R_star"))
    )
    return {k: cols[:, verdicts.LAW_KEYS.index(k)] for k in names}


def _run_index(study) -> dict[str, int]:
    return {r: i for i, r in enumerate(study.table.run_id)}


def parametric(study, n_sims: int, seed: int) -> dict:
    """Simulated studies at the fitted law on the fit's own runs: per constant the refits'
    percentile interval, share on the box edge; the extrapolation error (`identification`)."""
    from slmscale.laws.design import extrapolation_error

    t = study.fit_points
    est = study.estimates10
    truth = est[None, :7]
    L = simulate.simulate_losses(np.repeat(truth, n_sims, 0), t.N, t.D, t.U, study.noise, seed)
    warm = np.array(warm_starts_from(study.chinchilla))  # as the runs bootstrap starts
    refits, edge = simulate.refit_studies(t.N, t.D, t.U, L, study.doc["huber_delta"], warm)
    out = {}
    for j, k in enumerate(verdicts.LAW_KEYS):
        if k.startswith("R_star") and study.data_constrained is None:
            continue
        iv = verdicts.clip(k, verdicts.percentile(refits[:, j]))
        out[k] = {
            "interval": iv,
            "at_bounds": float(np.mean(edge[:, j])),
            "identified": verdicts.check(k, iv) == "pass",
        }
    theta = np.column_stack([np.log(refits[:, [1, 2, 0]]), refits[:, 3:5]])
    target = 100.0 * float(np.max(t.flops))
    extrap = extrapolation_error(theta, np.repeat(truth, n_sims, 0), target)
    return {"constants": out, "extrapolation": extrap, "samples": refits}


SIM_MAX = 400  # simulated studies at the fitted law (percentiles need no more)
BELT_GRID = np.logspace(-1.0, 4.0, 17)  # candidate R* values over the search box
BELT_SIMS = 100
BELT_N_GRID = 11  # the belt's R* refits seed from a half-decade grid (1,700 of them per fit)


def rstar_belt(study, eq4_samples: np.ndarray, seed: int) -> dict[str, list[float | None]]:
    """A Neyman belt for R*_N and R*_D: every candidate value whose simulated studies give the
    observed estimate between their 2.5th and 97.5th percentiles.

    R* sits on a flat ridge and its estimator is biased through Eq. 4's errors (R*_D at 25 on
    the paper's grid comes out with median 7, and sharply at 4-5 in 1% of studies), so
    simulations at the fitted law, centred on the biased estimate, miss the truth.  Here the
    studies' Eq. 4 truths are the runs bootstrap's Eq. 4 samples (the Eq. 4 laws these runs
    allow), each study's Eq. 4 is refitted once (single-epoch losses do not depend on R*), and
    for every candidate (the other R* at its estimate) the multi-epoch losses are drawn with the
    same noise and R* refitted with that study's Eq. 4 frozen.  The interval is the candidates
    accepted (a box end when the end is).
    """
    t = study.fit_points
    m = ~t.single_epoch
    n = min(len(eq4_samples), BELT_SIMS)
    rng = np.random.default_rng([seed, 2])
    est = study.estimates10
    truth = np.repeat(est[None, :7], n, 0)
    truth[:, :5] = eq4_samples[rng.integers(0, len(eq4_samples), n)]
    sigma = study.noise if np.ndim(study.noise) else np.full(len(t), study.noise)
    L = simulate.simulate_losses(truth, t.N, t.D, t.U, sigma, seed + 2)
    warm = np.array(warm_starts_from(study.chinchilla))
    s = t.single_epoch
    delta = study.doc["huber_delta"]
    theta, _ = simulate.refit_eq4(t.N[s], t.D[s], L[:, s], delta, warm)
    eq4 = simulate.theta_to_params(theta)
    z = simulate.point_noise(t.N[m], t.D[m], t.U[m], n, seed + 2)
    k = len(BELT_GRID)
    out = {}
    for key, j in (("R_star_N", 5), ("R_star_D", 6)):
        cand = np.tile(truth, (k, 1))
        cand[:, j] = np.repeat(BELT_GRID, n)
        Lm = simulate.true_losses(cand, t.N[m], t.D[m], t.U[m]) * np.exp(
            np.tile(sigma[m] * z, (k, 1))
        )
        rs = simulate.refit_rstar(
            np.tile(eq4, (k, 1)), t.N[m], t.D[m], t.U[m], Lm, delta, n_grid=BELT_N_GRID
        )
        got = np.log(rs[:, j - 5]).reshape(k, n)
        lo, hi = np.percentile(got, [2.5, 97.5], axis=1)
        obs = np.log(est[j])
        ok = (lo <= obs + 1e-9) & (obs - 1e-9 <= hi)
        out[key] = (
            [float(BELT_GRID[ok].min()), float(BELT_GRID[ok].max())] if ok.any() else [None, None]
        )
    return out


def add_intervals(study, *, n_boot: int, seed: int, progress=None) -> dict[str, np.ndarray]:
    """Fill `study.doc` ci95 / verdicts / identification / bootstrap; returns the raw samples."""
    doc = study.doc
    with_rstar = study.data_constrained is not None
    ts = bootstrap_two_stage(
        study.table, study.chinchilla, n_boot=n_boot, seed=seed, with_rstar=with_rstar,
        progress=progress,
    )  # fmt: skip
    samples = law_samples(ts.eq4, ts.rstar)
    n_sims = min(n_boot, SIM_MAX)
    sim = parametric(study, n_sims, seed)
    progress and progress.update(n_boot)
    est = dict(zip(verdicts.LAW_KEYS, study.estimates10, strict=True))
    doc["verdicts"] = {}
    belts = rstar_belt(study, ts.eq4, seed) if with_rstar else {}
    for k, v in samples.items():
        runs_iv = verdicts.percentile(v)
        sim_iv = sim["constants"][k]["interval"]
        if k.startswith("R_star"):  # the ridge: simulations around the estimate are not enough
            belt = belts[k]
            sim_iv = verdicts.hull(sim_iv, belt)
            sim["constants"][k].update(belt=belt, identified=verdicts.check(k, sim_iv) == "pass")
        reps = study.max_repeats.get(k)
        doc["verdicts"][k] = verdicts.verdict(k, est[k], runs_iv, sim_iv, max_repeats=reps)
        doc["ci95"][k] = doc["verdicts"][k]["interval"]
    verdicts.tie_together(doc["verdicts"])
    doc["identification"] = {
        "n_sims": n_sims,
        "seed": seed,
        "noise": study.noise_summary,
        "constants": {
            k: {kk: c[kk] for kk in ("interval", "at_bounds", "identified", "belt") if kk in c}
            for k, c in sim["constants"].items()
        },
        "belt": "R*_N, R*_D: candidates over [0.1, 1e4] whose simulated studies reach the "
        "observed estimate (2.5-97.5%), hulled with the simulation at the fit",
        "extrapolation": sim["extrapolation"],
    }
    doc["interval_method"] = verdicts.METHOD
    _other_intervals(study, ts.weights, n_boot, seed)
    cols = list(PARAM_NAMES) + (["R_star_N", "R_star_D"] if with_rstar else [])
    doc["bootstrap"] = {
        "n": n_boot,
        "seed": seed,
        "resample": "runs with replacement (seed repeats of a point together), single-epoch "
        "and multi-epoch runs each within their group; both stages refitted per replicate "
        "(Eq. 4, then R* with that replicate's Eq. 4); text reference: whole models with all "
        "their checkpoints",
        "interval": "law constants: " + verdicts.METHOD + "; exponents of envelopes and "
        "benchmarks: bias-corrected percentile, widened by sqrt(n / (n - p)) about the estimate",
        "columns": cols,
        "samples": np.column_stack([samples[k] for k in cols]),
        "linear": {
            m: d["linear_samples"] for m, d in study.downstream.items() if "linear_samples" in d
        },
        "link": {m: d["link_samples"] for m, d in study.downstream.items() if "link_samples" in d},
        "plateau": {
            m: d["plateau_samples"] for m, d in study.downstream.items() if "plateau_samples" in d
        },
    }
    return samples


def _other_intervals(study, W, n_boot: int, seed: int) -> None:
    """Envelope and benchmark exponents: bias-corrected intervals of the runs bootstrap."""
    doc = study.doc
    n_single = int(np.count_nonzero(study.table.single_epoch))
    other: dict[str, tuple] = {}  # key -> (samples, estimate, dof)
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
            d["link_samples"], d["plateau_samples"] = link_samples(
                d["loss"], d["y"], d["linear"], W[:, rows]
            )
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


def eq4_verdicts(t, fit, n_boot: int, seed: int) -> tuple[dict, dict]:
    """(ci95, verdicts) of Eq. 4 alone on the runs `t` (a per-tokenizer fit, Figure 5): the
    runs bootstrap and simulated studies at its fit, as for the main law."""
    from slmscale.laws.bootstrap import refit_eq4

    eq4 = refit_eq4(t.N, t.D, t.loss, fit, resample_weights(len(t), n_boot, seed))
    runs = law_samples(eq4, None)
    p = fit.params
    est7 = np.array([[p.E, p.A, p.B, p.alpha, p.beta, np.nan, np.nan]])
    pred = simulate.true_losses(est7, t.N, t.D, t.U)[0]
    r = np.log(t.loss) - np.log(pred)
    sigma = max(float(np.sqrt(np.sum(r**2) / max(r.size - 5, 1))), 1e-4)
    n_sims = min(n_boot, SIM_MAX)
    L = simulate.simulate_losses(np.repeat(est7, n_sims, 0), t.N, t.D, t.U, sigma, seed)
    warm = np.array(warm_starts_from(fit))
    sims, _ = simulate.refit_studies(t.N, t.D, t.U, L, fit.huber_delta, warm)
    est = simulate.with_exponents(est7)[0]
    ci, out = {}, {}
    for k, v in runs.items():
        j = verdicts.LAW_KEYS.index(k)
        sim_iv = verdicts.clip(k, verdicts.percentile(sims[:, j]))
        out[k] = verdicts.verdict(k, est[j], verdicts.percentile(v), sim_iv)
        ci[k] = out[k]["interval"]
    verdicts.tie_together(out)
    return ci, out
