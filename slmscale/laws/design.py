"""Will a grid identify the law?  Simulated studies before training (pure core: numpy + scipy).

A grid of (N, D, U_D) runs fixes what a fit can know before any GPU-hour is spent: with 1% noise
on the final losses, the paper's grid leaves A and alpha free along a ridge while R^2 stays at
0.99.  So `slmscale design` simulates the study (`simulate.py`, shared with the fit's parametric
bootstrap and its identification check):

1. draw a true law per simulation from a *prior* (the paper's Table 4 speech constants, or a
   user's fit.json with its bootstrap samples as the spread);
2. draw final losses at every planned run: Eq. 4 for single-epoch runs, Eq. 7/8 for multi-epoch
   ones, times log-normal noise of a stated sigma (each run's noise stream keyed by the run and
   the seed: common random numbers across grids);
3. refit with the fitter `slmscale fit` uses: Eq. 4 from the same 7,776-start grid, its best 8
   starts polished by the house's one Eq. 4 optimizer (`batchfit`), then R*_N, R*_D on the
   multi-epoch runs with that Eq. 4 frozen (`rstarfit`), every simulation in one batch;
4. summarise, per constant, the 95% interval of the refitted values around the truth (its width
   is what an interval of a real study on this grid would show), whether the constant is
   *identified*, and the error of the extrapolated compute-optimal loss (Eq. 6) at a target
   compute.

Identified: the project's rule (`identify.py`, the one fit.json's verdicts use) applied to the
simulated interval: within a factor of 10 (scale constants) or 3 (exponents), not ended by the
search box (more than 2.5% of refits on its edge), and E on the edge also marks A, B, alpha, G, a, b.
The interval is placed around the prior's centre from the refits' errors: E, A, B, R*_N, R*_D, G
as ratios (est / true), the exponents alpha, beta, a, b as differences, so a prior with spread
(bootstrap samples) measures the grid, not the spread of the prior; it is clipped to the search
box, where every refit lands.

Leaner grids and the next runs to train are in `design_search.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from slmscale import paper
from slmscale.errors import UserError
from slmscale.laws import identify, simulate
from slmscale.laws.chinchilla import PARAM_NAMES, THETA_BOUNDS, log_predict, r_squared
from slmscale.laws.flops import six_nd

PRIOR_COLUMNS = (*PARAM_NAMES, "R_star_N", "R_star_D")  # E, A, B, alpha, beta, R*_N, R*_D
CONSTANTS = (*PRIOR_COLUMNS, "G", "a", "b")  # the columns of `simulate.refit_studies`
RATIO_SCALE = frozenset({"E", "A", "B", "R_star_N", "R_star_D", "G"})
DEFAULT_NOISE = 0.01
RULE = (
    f"{identify.RULE} (identify.py, as fit.json's verdicts); here the interval is that of "
    "the simulated refits"
)
FITTER = (
    "Eq. 4: Huber (delta 0.03) on log residuals from the fitter's 7,776-start grid, best 8 "
    "polished in its search box (batchfit, as slmscale fit); R*: rstarfit with that Eq. 4 frozen"
)
# Where a refit can land (the search boxes): intervals placed around a centre are clipped to it.
BOX = {
    "E": tuple(np.exp(THETA_BOUNDS[2])),
    "A": tuple(np.exp(THETA_BOUNDS[0])),
    "B": tuple(np.exp(THETA_BOUNDS[1])),
    "alpha": THETA_BOUNDS[3],
    "beta": THETA_BOUNDS[4],
    "R_star_N": simulate.RSTAR_EDGES,
    "R_star_D": simulate.RSTAR_EDGES,
    "G": (0.0, np.inf),
    "a": (0.0, 1.0),
    "b": (0.0, 1.0),
}


# --- design points and the prior -----------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One planned (or finished) run: what the law sees (N, D, U_D) and what it costs."""

    N: float
    D: float
    U: float
    cost: float = 0.0  # GPU-hours, or FLOPs when no throughput is known (see `Design.cost_unit`)
    size: str = ""
    key: str = ""  # trial key, when the run is a trial of a spec
    group: str = "main"  # "main" or "extra[k]": the spec block the run comes from
    ratio: float | None = None  # D / N as the spec states it
    epochs: float | str = 1.0  # the spec's epochs rule: a number, or "auto"
    seed: int = 0  # the trial's training seed (seed repeats of a point draw their own noise)

    @property
    def single(self) -> bool:
        return self.U >= self.D * (1 - 1e-9)

    @property
    def flops(self) -> float:
        return float(six_nd(self.N, self.D))

    def label(self) -> str:
        ep = "auto" if self.epochs == "auto" else f"{float(self.epochs):g}"
        r = f"D/N={self.ratio:g}" if self.ratio is not None else f"D={self.D:.3g}"
        return f"{self.size or f'N={self.N:.3g}'} {r} epochs={ep}"


@dataclass
class Prior:
    """The law simulations are drawn from: a centre and, optionally, samples as its spread."""

    center: dict[str, float]  # PRIOR_COLUMNS
    noise: float  # sigma of log-normal noise on final losses
    source: str
    samples: np.ndarray | None = None  # (n, 7) in PRIOR_COLUMNS order
    notes: list[str] = field(default_factory=list)
    noise_source: str = "stated"

    def draws(self, n_sims: int, seed: int) -> np.ndarray:
        """(n_sims, 7) true laws: the centre, or bootstrap samples drawn with replacement."""
        if self.samples is None or len(self.samples) == 0:
            return np.tile([self.center[k] for k in PRIOR_COLUMNS], (n_sims, 1))
        rng = np.random.default_rng([seed, 1])
        return self.samples[rng.integers(0, len(self.samples), n_sims)]


def paper_prior(noise: float | None = None) -> Prior:
    """Table 4's speech constants (Eq. 4 and Eq. 7), 1% noise unless stated."""
    center = {k: float(paper.SPEECH_LAW[k]) for k in PRIOR_COLUMNS}
    sigma = DEFAULT_NOISE if noise is None else noise
    how = "default (1%)" if noise is None else "--noise"
    return Prior(center, sigma, "paper Table 4 (speech)", noise_source=how)


def prior_from_fit(doc: dict, label: str, noise: float | None = None) -> Prior:
    """A fit.json as the prior: its constants, its bootstrap samples, its residual noise.

    R*_N, R*_D missing from the fit (a chinchilla-only fit) are taken from Table 4, said so in
    `notes`.  The noise defaults to the RMSE of the fit's log residuals.
    """
    params = doc.get("params") if isinstance(doc, dict) else None
    if not isinstance(params, dict):
        raise UserError(f"{label}: not a fit.json (no params)")
    center, notes = {}, []
    for k in PRIOR_COLUMNS:
        v = params.get(k)
        if v is None and k.startswith("R_star"):
            v = paper.SPEECH_LAW[k]
            notes.append(f"{k} not in the fit: Table 4's {v:g} used")
        if not isinstance(v, int | float) or not np.isfinite(v) or v < 0:
            raise UserError(f"{label}: params.{k} is missing or not a non-negative number")
        center[k] = float(v)
    samples = None
    boot = doc.get("bootstrap") or {}
    if boot.get("samples"):
        cols = list(boot.get("columns") or PARAM_NAMES)
        raw = np.asarray(boot["samples"], float)
        if raw.ndim != 2 or raw.shape[1] != len(cols):
            raise UserError(f"{label}: bootstrap.samples do not match bootstrap.columns")
        samples = np.column_stack(
            [
                raw[:, cols.index(k)] if k in cols else np.full(len(raw), center[k])
                for k in PRIOR_COLUMNS
            ]
        )
        samples = samples[np.all(np.isfinite(samples), axis=1)]
    else:
        notes.append("no bootstrap samples in the fit: its constants are used as a point prior")
    sigma, how = fit_noise(doc, noise)
    if sigma is None:
        sigma, how = DEFAULT_NOISE, "default (1%): the fit has no seed spread nor residuals"
        notes.append("no seed spread nor residuals in the fit: noise 1%")
    return Prior(center, float(sigma), f"fit {label}", samples, notes, noise_source=how)


def fit_noise(doc: dict, noise: float | None = None) -> tuple[float | None, str]:
    """(sigma, where it came from): `--noise`, else the fit's measured seed spread (the pooled
    within-point sd of log loss), else its residuals' sigma."""
    if noise is not None:
        return float(noise), "--noise"
    spread = ((doc.get("seed_spread") or {}).get("metrics") or {}).get("loss") or {}
    if isinstance(spread.get("pooled_std_log"), int | float) and spread["pooled_std_log"] > 0:
        return float(
            spread["pooled_std_log"]
        ), "the fit's seed spread (runs repeated with other seeds)"
    rmse = (doc.get("quality") or {}).get("rmse_log")
    if isinstance(rmse, int | float) and rmse > 0:
        return float(rmse), "the fit's residuals (RMSE of log loss; no seed repeats measured)"
    return None, ""


def simulate_points(prior: Prior, points: Sequence[Point], n_sims: int, seed: int):
    """(truths (S, 7), losses (S, P)) of `n_sims` simulated studies on `points`."""
    truths = prior.draws(n_sims, seed)
    N, D, U = (np.array([getattr(p, k) for p in points], float) for k in "NDU")
    run_seeds = [p.seed for p in points]
    return truths, simulate.simulate_losses(truths, N, D, U, prior.noise, seed, run_seeds)


# --- one grid: simulate, refit, summarise --------------------------------------------------------


@dataclass
class GridResult:
    """What simulated studies on one grid say: per-constant intervals and the extrapolation."""

    name: str
    points: list[Point]
    cost: float
    constants: dict[str, dict]  # name -> center, interval, width, spread, at_bounds, identified
    extrapolation: dict  # target_flops, interval (relative error), width, median_abs
    note: str = ""
    theta: np.ndarray | None = field(default=None, repr=False)  # (S, 5) Eq. 4 refits

    @property
    def all_identified(self) -> bool:
        return all(c["identified"] for c in self.constants.values())

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "n_runs": len(self.points),
            "cost": self.cost,
            "all_identified": self.all_identified,
            "constants": self.constants,
            "extrapolation": self.extrapolation,
            "note": self.note,
        }


def summarise(name: str, est, true, at_bounds, center: float) -> dict:
    """The 95% interval of one constant's refits, placed around `center` (module doc)."""
    with np.errstate(all="ignore"):
        err = np.log(est / true) if name in RATIO_SCALE else est - true
    ok = np.isfinite(err)
    if ok.mean() < 0.975:  # more than 2.5% of refits gave no usable value: unbounded
        lo_e, hi_e = -np.inf, np.inf
    else:
        lo_e, hi_e = np.percentile(err[ok], [2.5, 97.5])
    with np.errstate(all="ignore"):
        if name in RATIO_SCALE:
            lo, hi = center * np.exp(lo_e), center * np.exp(hi_e)
        else:
            lo, hi = center + lo_e, center + hi_e
    lo, hi = (float(v) for v in np.clip([lo, hi], *BOX[name]))
    edge = not np.isfinite(lo_e) or interval_on_edge(name, lo, hi)
    with np.errstate(all="ignore"):
        factor = hi / lo if lo > 0 else np.inf
    return {
        "center": float(center),
        "interval": [lo, hi],
        "width": hi - lo,
        # how much wider than another grid's: log(hi / lo) for scale constants, hi - lo otherwise
        "spread": float(np.log(factor) if name in RATIO_SCALE else hi - lo),
        "factor": float(factor),
        "at_bounds": float(np.mean(at_bounds)),
        "on_edge": bool(edge),
        "identified": bool(identify.is_identified(name, [lo, hi]) and not edge),
    }


def interval_on_edge(name: str, lo: float, hi: float) -> bool:
    """The interval is ended by the search box (more than 2.5% of refits on its edge)."""
    b_lo, b_hi = BOX[name]
    if not np.isfinite(b_hi):
        return not (np.isfinite(lo) and np.isfinite(hi) and lo > b_lo)
    with np.errstate(all="ignore"):
        if name in RATIO_SCALE:
            lo, hi, b_lo, b_hi = np.log([lo, hi, b_lo, b_hi])
    tol = 1e-6 * max(1.0, b_hi - b_lo)
    return bool(lo <= b_lo + tol or hi >= b_hi - tol)


def _not_fitted(center: float, why: str) -> dict:
    keys = ("interval", "width", "spread", "factor", "at_bounds", "on_edge")
    return {"center": float(center), **dict.fromkeys(keys), "identified": False, "reason": why}


def extrapolation_error(theta: np.ndarray, truths: np.ndarray, target_flops: float) -> dict:
    """Relative error of the Eq. 6 compute-optimal loss at `target_flops`, refit vs truth."""
    pred = simulate.optimal_loss_many(simulate.theta_to_params(theta), target_flops)
    true = simulate.optimal_loss_many(truths[:, :5], target_flops)
    rel = pred / true - 1.0
    ok = np.isfinite(rel)
    if ok.mean() < 0.975:
        lo, hi = -np.inf, np.inf
    else:
        lo, hi = (float(v) for v in np.percentile(rel[ok], [2.5, 97.5]))
    return {
        "target_flops": float(target_flops),
        "loss": float(np.median(true[np.isfinite(true)])) if np.isfinite(true).any() else None,
        "interval": [lo, hi],
        "width": hi - lo,
        "median_abs": float(np.median(np.abs(rel[ok]))) if ok.any() else None,
    }


def _no_fit(name, points, cost, names, center, target_flops, why) -> GridResult:
    extrap = {"target_flops": float(target_flops), "interval": None, "width": np.inf}
    extrap["median_abs"] = None
    constants = {k: _not_fitted(center[k], why) for k in names}
    return GridResult(name, list(points), cost, constants, extrap, note=why)


def evaluate_grid(
    name: str,
    points: Sequence[Point],
    prior: Prior,
    *,
    n_sims: int,
    seed: int,
    target_flops: float,
    with_rstar: bool,
    huber_delta: float = paper.HUBER_DELTA,
    progress: Callable[[int], None] | None = None,
    centers: dict | None = None,
) -> GridResult:
    """Simulate `n_sims` studies on `points`, refit each as `slmscale fit` would, summarise.

    `centers` (default: the prior's centre) are where the intervals are placed (the fit's own
    estimates, for the identification check of a fit)."""
    points = list(points)
    single = [p for p in points if p.single]
    n_multi = len(points) - len(single)
    truths, L = simulate_points(prior, points, n_sims, seed)
    true10 = simulate.with_exponents(truths)
    c7 = np.array([[prior.center[k] for k in PRIOR_COLUMNS]])
    center = dict(zip(CONSTANTS, simulate.with_exponents(c7)[0], strict=True))
    center.update(centers or {})
    names = CONSTANTS if with_rstar else tuple(k for k in CONSTANTS if not k.startswith("R_star"))
    cost = float(sum(p.cost for p in points))
    if len(single) < 5:
        progress and progress(n_sims)
        why = f"{len(single)} single-epoch run(s): Eq. 4 needs at least 5"
        return _no_fit(name, points, cost, names, center, target_flops, why)
    N, D, U = (np.array([getattr(p, k) for p in points], float) for k in "NDU")
    if not with_rstar:  # the Eq. 4 stage only
        keep = U >= D * (1 - 1e-9)
        N, D, U, L = N[keep], D[keep], U[keep], L[:, keep]
    est, edge = simulate.refit_studies(N, D, U, L, huber_delta)
    progress and progress(n_sims)
    notes = []
    if len({p.N for p in single}) < 2:
        notes.append("one model size: A / N^alpha cannot be told apart from E")
    if with_rstar and n_multi < 3:
        notes.append(f"{n_multi} multi-epoch run(s): R* needs at least 3")
    constants = {}
    for j, k in enumerate(CONSTANTS):
        if k not in names:
            continue
        if np.all(np.isnan(est[:, j])):
            constants[k] = _not_fitted(center[k], notes[-1])
        else:
            constants[k] = summarise(k, est[:, j], true10[:, j], edge[:, j], center[k])
    if constants.get("E", {}).get("on_edge"):  # A / N^alpha absorbs E there (identify.py)
        for k in identify.E_EDGE_PARTNERS:
            if k in constants:
                constants[k]["identified"] = False
    with np.errstate(divide="ignore"):
        theta = np.column_stack([np.log(est[:, [1, 2, 0]]), est[:, 3:5]])  # a, b, e, alpha, beta
    extrap = extrapolation_error(theta, truths, target_flops)
    # R^2 stays high whether or not the constants are pinned down: shown beside them.
    s = U >= D * (1 - 1e-9)
    pred = np.exp(log_predict(theta, np.log(N[s]), np.log(D[s])))
    r2 = [float(r_squared(L[i, s], pred[i])) for i in range(n_sims)]
    extrap["r2_range"] = [float(v) for v in np.percentile(r2, [2.5, 97.5])]
    return GridResult(name, points, cost, constants, extrap, "; ".join(notes), theta)


# The report imports the finished runs' section from here (it lives in identification.py).
from slmscale.laws.identification import identification_blocks  # noqa: E402, F401
