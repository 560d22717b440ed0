"""Will a grid identify the law?  Simulated studies before training (pure core: numpy + scipy).

A grid of (N, D, U_D) runs fixes what a fit can know before any GPU-hour is spent: with 1% noise
on the final losses, the paper's grid leaves A and alpha free along a ridge while R^2 stays at
0.99.  So `slmscale design` simulates the study:

1. draw a true law per simulation from a *prior* (the paper's Table 4 speech constants, or a
   user's fit.json with its bootstrap samples as the spread);
2. draw final losses at every planned run: Eq. 4 for single-epoch runs, Eq. 7/8 for multi-epoch
   ones, times log-normal noise of a stated sigma.  Each run's noise stream is keyed by the run
   itself (N, D, U_D) and the seed, so grids that share a run share its noise (common random
   numbers: a variant's difference from the full grid is the grid's doing, not the dice's);
3. refit with the fitter `slmscale fit` uses: Eq. 4's Huber objective on the same 7,776-start
   grid, scored for every simulation in one vectorised pass, its best 8 starts polished in the
   same search box, the best optimum kept; then R*_N, R*_D on the multi-epoch runs with that
   Eq. 4 law frozen, by the R* refitter of the fit's bootstrap (`batchfit.fit_rstar_batch`).
   The polishing of all simulations x starts runs as one batch (a projected Levenberg-Marquardt
   on the same objective, `design_refits.py`) instead of thousands of scipy L-BFGS-B calls; it
   lands on the same optimum (tests/test_design.py compares it with `fit_chinchilla`);
4. summarise, per constant, the 95% interval of the refitted values around the truth (its width
   is what a bootstrap interval of a real study on this grid would show), whether the constant is
   *identified*, and the error of the extrapolated compute-optimal loss (Eq. 6) at a target
   compute.

Identified: the project's rule (`identify.py`, the one fit.json's `not_identified` uses) applied
to the simulated interval: within a factor of 10 (scale constants) or 3 (exponents), not ended
by the search box (more than 2.5% of refits on its edge), and E on the edge also marks A, alpha,
a, b.
The interval is placed around the prior's centre from the refits' errors: E, A, B, R*_N, R*_D as
ratios (est / true), the exponents alpha, beta, a, b as differences, so a prior with spread
(bootstrap samples) measures the grid, not the spread of the prior; it is clipped to the search
box, where every refit lands.

`grid_variants` builds leaner grids (drop a size, a budget, a block of extra runs; halve the
largest size's budgets); `propose_next` picks the next runs that most narrow the extrapolation
interval per unit of cost, greedily, by simulation and warm-started refits (as the bootstrap does).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from slmscale import paper
from slmscale.errors import UserError
from slmscale.laws import data_constrained as dc
from slmscale.laws import identify
from slmscale.laws.chinchilla import (
    PARAM_NAMES,
    THETA_BOUNDS,
    ChinchillaParams,
    log_predict,
    r_squared,
)
from slmscale.laws.design_refits import (
    Workers,
    collect_rstar,
    fit_eq4_many,
    optimal_loss_many,
    submit_rstar,
    theta_at_bounds,
    theta_to_params,
)

PRIOR_COLUMNS = (*PARAM_NAMES, "R_star_N", "R_star_D")  # E, A, B, alpha, beta, R*_N, R*_D
CONSTANTS = (*PRIOR_COLUMNS, "a", "b")
RATIO_SCALE = frozenset({"E", "A", "B", "R_star_N", "R_star_D"})
DEFAULT_NOISE = 0.01
RULE = (
    f"{identify.RULE} (identify.py, as fit.json's not_identified); here the interval is that of "
    "the simulated refits"
)
FITTER = (
    "Eq. 4: Huber (delta 0.03) on log residuals from the fitter's 7,776-start grid, best 8 "
    "polished in its search box (batched); R*: the bootstrap's fit_rstar_batch with that Eq. 4 "
    "frozen"
)
_RSTAR_EDGES = tuple(10.0**x for x in dc.LOG10_RSTAR_RANGE)
# Where a refit can land (the search boxes): intervals placed around a centre are clipped to it.
_BOX = {
    "E": tuple(np.exp(THETA_BOUNDS[2])),
    "A": tuple(np.exp(THETA_BOUNDS[0])),
    "B": tuple(np.exp(THETA_BOUNDS[1])),
    "alpha": THETA_BOUNDS[3],
    "beta": THETA_BOUNDS[4],
    "R_star_N": _RSTAR_EDGES,
    "R_star_D": _RSTAR_EDGES,
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

    @property
    def single(self) -> bool:
        return self.U >= self.D * (1 - 1e-9)

    @property
    def flops(self) -> float:
        return 6.0 * self.N * self.D

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
    return Prior(center, sigma, "paper Table 4 (speech)")


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
            [raw[:, cols.index(k)] if k in cols else np.full(len(raw), center[k]) for k in PRIOR_COLUMNS]
        )
        samples = samples[np.all(np.isfinite(samples), axis=1)]
    else:
        notes.append("no bootstrap samples in the fit: its constants are used as a point prior")
    sigma = noise
    if sigma is None:
        sigma = (doc.get("quality") or {}).get("rmse_log")
        if not isinstance(sigma, int | float) or not sigma > 0:
            sigma = DEFAULT_NOISE
            notes.append("no residuals in the fit: noise 1%")
    return Prior(center, float(sigma), f"fit {label}", samples, notes)


# --- simulated losses ----------------------------------------------------------------------


def point_noise(points: Sequence[Point], n_sims: int, seed: int) -> np.ndarray:
    """(n_sims, P) standard normals; each run's column depends only on (seed, N, D, U_D)."""
    out = np.empty((n_sims, len(points)))
    for j, p in enumerate(points):
        h = hashlib.sha256(struct.pack("<3d", p.N, p.D, p.U)).digest()
        rng = np.random.default_rng([seed, int.from_bytes(h[:8], "little")])
        out[:, j] = rng.standard_normal(n_sims)
    return out


def true_losses(truths: np.ndarray, points: Sequence[Point]) -> np.ndarray:
    """(S, P) noise-free losses: Eq. 4 for single-epoch runs, Eq. 7/8 for multi-epoch ones."""
    N, D, U = (np.array([getattr(p, k) for p in points], float) for k in "NDU")
    E, A, B, al, be = (truths[:, i : i + 1] for i in range(5))
    out = E + A / N**al + B / D**be
    multi = np.flatnonzero(~np.array([p.single for p in points], bool))
    for s in range(len(truths)) if multi.size else ():
        law = ChinchillaParams(*truths[s, :5])
        out[s, multi] = dc.predict(law, N[multi], D[multi], U[multi], *truths[s, 5:7])
    return out


def simulate(prior: Prior, points: Sequence[Point], n_sims: int, seed: int):
    """(truths (S, 7), losses (S, P)) of `n_sims` simulated studies on `points`."""
    truths = prior.draws(n_sims, seed)
    noise = point_noise(points, n_sims, seed)
    return truths, true_losses(truths, points) * np.exp(prior.noise * noise)


# --- one grid: simulate, refit, summarise --------------------------------------------------------


@dataclass
class GridResult:
    """What simulated studies on one grid say: per-constant intervals and the extrapolation."""

    name: str
    points: list[Point]
    cost: float
    constants: dict[str, dict]  # name -> center, interval, width, rel_width, at_bounds, identified
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


def _with_exponents(x: np.ndarray) -> np.ndarray:
    """Append Eq. 6's a = beta / (alpha + beta), b = alpha / (alpha + beta) to (S, 7) rows."""
    with np.errstate(all="ignore"):
        s = x[:, 3] + x[:, 4]
        return np.column_stack([x, x[:, 4] / s, x[:, 3] / s])


def _summary(name, est, true, at_bounds, center) -> dict:
    """The 95% interval of one constant's refits, placed around the prior's centre."""
    with np.errstate(all="ignore"):
        err = np.log(est / true) if name in RATIO_SCALE else est - true
    ok = np.isfinite(err)
    if ok.mean() < 0.975:  # more than 2.5% of refits gave no usable value: unbounded
        lo_e, hi_e = -np.inf, np.inf
    else:
        lo_e, hi_e = np.percentile(err[ok], [2.5, 97.5])
    if name in RATIO_SCALE:
        lo, hi = center * np.exp(lo_e), center * np.exp(hi_e)
    else:
        lo, hi = center + lo_e, center + hi_e
    lo, hi = np.clip([lo, hi], *_BOX[name])
    edge = not np.isfinite(lo_e) or _interval_on_edge(name, lo, hi)
    width = hi - lo
    frac = float(np.mean(at_bounds))
    with np.errstate(all="ignore"):
        factor = hi / lo if lo > 0 else np.inf
    return {
        "center": float(center),
        "interval": [float(lo), float(hi)],
        "width": float(width),
        # how much wider than another grid's: log(hi / lo) for E, A, B, R*; hi - lo otherwise
        "spread": float(np.log(factor) if name in RATIO_SCALE else width),
        "factor": float(factor),
        "at_bounds": frac,
        "on_edge": bool(edge),
        "identified": bool(identify.is_identified(name, [lo, hi]) and not edge),
    }


def _interval_on_edge(name: str, lo: float, hi: float) -> bool:
    """The interval is ended by the search box (more than 2.5% of refits on its edge)."""
    b_lo, b_hi = _BOX[name]
    if name in RATIO_SCALE:
        lo, hi, b_lo, b_hi = np.log([lo, hi, b_lo, b_hi])
    tol = 1e-6 * max(1.0, b_hi - b_lo)
    return bool(lo <= b_lo + tol or hi >= b_hi - tol)


def _not_fitted(center: float, why: str) -> dict:
    return {
        "center": float(center),
        "interval": None,
        "width": None,
        "spread": None,
        "factor": None,
        "at_bounds": None,
        "on_edge": None,
        "identified": False,
        "reason": why,
    }


def extrapolation_error(theta: np.ndarray, truths: np.ndarray, target_flops: float) -> dict:
    """Relative error of the Eq. 6 compute-optimal loss at `target_flops`, refit vs truth."""
    pred = optimal_loss_many(theta_to_params(theta), target_flops)
    true = optimal_loss_many(truths[:, :5], target_flops)
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


def evaluate_grid(name: str, points: Sequence[Point], prior: Prior, **kw) -> GridResult:
    """Simulate studies on `points`, refit each as `slmscale fit` would, summarise (see
    `start_grid` for the arguments)."""
    return start_grid(name, points, prior, **kw).result()


@dataclass
class PendingGrid:
    """A grid whose Eq. 4 refits are done and whose R* refits may still be running."""

    name: str
    points: list[Point]
    cost: float
    names: tuple
    center: dict
    truths: np.ndarray
    target_flops: float
    theta: np.ndarray | None = None
    est: np.ndarray | None = None
    edge: np.ndarray | None = None
    notes: list = field(default_factory=list)
    rstar: list | None = None
    progress: Callable[[int], None] | None = None
    r2: list | None = None  # R^2 of each refit on its own losses

    def result(self) -> GridResult:
        if self.theta is None:
            why = self.notes[0]
            return GridResult(
                self.name, self.points, self.cost,
                {k: _not_fitted(self.center[k], why) for k in self.names},
                {"target_flops": float(self.target_flops), "interval": None, "width": np.inf, "median_abs": None},
                note=why,
            )
        est, edge = self.est, self.edge
        if self.rstar is not None:
            rstar = collect_rstar(self.rstar, self.progress)
            est[:, 5:7] = rstar
            edge[:, 5:7] = (rstar <= _RSTAR_EDGES[0] * (1 + 1e-6)) | (rstar >= _RSTAR_EDGES[1] * (1 - 1e-6))
        edge[:, 7:9] = edge[:, [3, 4]].any(axis=1, keepdims=True)  # a, b follow alpha and beta
        est9, true9 = _with_exponents(est), _with_exponents(self.truths)
        constants = {}
        for j, k in enumerate(CONSTANTS):
            if k not in self.names:
                continue
            if np.all(np.isnan(est9[:, j])):
                constants[k] = _not_fitted(self.center[k], self.notes[-1])
            else:
                constants[k] = _summary(k, est9[:, j], true9[:, j], edge[:, j], self.center[k])
        if constants.get("E", {}).get("on_edge"):  # A / N^alpha absorbs E there (identify.py)
            for k in identify.E_EDGE_PARTNERS:
                if k in constants:
                    constants[k]["identified"] = False
        extrap = extrapolation_error(self.theta, self.truths, self.target_flops)
        # R^2 stays high whether or not the constants are pinned down: shown beside them.
        extrap["r2_range"] = [float(v) for v in np.percentile(self.r2, [2.5, 97.5])]
        return GridResult(
            self.name, self.points, self.cost, constants, extrap, "; ".join(self.notes), self.theta
        )


def start_grid(
    name: str,
    points: Sequence[Point],
    prior: Prior,
    *,
    n_sims: int,
    seed: int,
    target_flops: float,
    with_rstar: bool,
    huber_delta: float = paper.HUBER_DELTA,
    workers: Workers | None = None,
    progress: Callable[[int], None] | None = None,
) -> PendingGrid:
    """Simulate `n_sims` studies on `points` and refit Eq. 4 (here) and R* (on `workers`)."""
    points = list(points)
    single = [p for p in points if p.single]
    multi = [p for p in points if not p.single]
    truths = prior.draws(n_sims, seed)
    center7 = np.array([[prior.center[k] for k in PRIOR_COLUMNS]])
    center = dict(zip(CONSTANTS, _with_exponents(center7)[0], strict=True))
    names = CONSTANTS if with_rstar else tuple(k for k in CONSTANTS if not k.startswith("R_star"))
    cost = float(sum(p.cost for p in points))
    pend = PendingGrid(name, points, cost, names, center, truths, target_flops, progress=progress)
    if len(single) < 5:
        progress and progress(n_sims * (2 if with_rstar else 1))
        pend.notes.append(f"{len(single)} single-epoch run(s): Eq. 4 needs at least 5")
        return pend
    N, D = (np.array([getattr(p, k) for p in single]) for k in "ND")
    _, L = simulate(prior, single, n_sims, seed)
    pend.theta, _ = fit_eq4_many(N, D, L, huber_delta)
    pred = np.exp(log_predict(pend.theta, np.log(N), np.log(D)))
    pend.r2 = [float(r_squared(L[s], pred[s])) for s in range(n_sims)]
    progress and progress(n_sims)
    pend.est = np.full((n_sims, 7), np.nan)
    pend.est[:, :5] = theta_to_params(pend.theta)
    pend.edge = np.zeros((n_sims, 9), bool)
    pend.edge[:, :5] = theta_at_bounds(pend.theta)
    if len({p.N for p in single}) < 2:
        pend.notes.append("one model size: A / N^alpha cannot be told apart from E")
    if with_rstar and len(multi) >= 3:
        Nm, Dm, Um = (np.array([getattr(p, k) for p in multi]) for k in "NDU")
        _, Lm = simulate(prior, multi, n_sims, seed)
        pend.rstar = submit_rstar(workers or Workers(1), pend.est[:, :5].copy(), Nm, Dm, Um, Lm, huber_delta)
    elif with_rstar:
        progress and progress(n_sims)
        pend.notes.append(f"{len(multi)} multi-epoch run(s): R* needs at least 3")
    return pend


# --- leaner grids ------------------------------------------------------------------------------


def halved(p: Point, available_tokens: float | None) -> Point:
    """The run with half its tokens: U_D follows the epochs rule (auto: min(D, data))."""
    D = p.D / 2.0
    if p.epochs == "auto":
        U = min(D, available_tokens) if available_tokens else D
    else:
        U = p.U / 2.0
    ratio = p.ratio / 2.0 if p.ratio is not None else None
    return replace(p, D=D, U=U, cost=p.cost / 2.0, key="", ratio=ratio)


def grid_variants(points: Sequence[Point], available_tokens: float | None = None) -> list[tuple[str, list[Point]]]:
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


# --- the next runs -----------------------------------------------------------------------------


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
        _, L = simulate(prior, pts, n_sims, seed)
        theta, _ = fit_eq4_many(N, D, L, huber_delta, warm)
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


# --- the report's section: the finished runs, simulated from their own fit ---------------------

REPORT_SIMS = 100


def identification_of_fit(doc: dict, single, multi=None, *, n_sims: int = REPORT_SIMS, seed: int = 0):
    """How well the finished runs identify each constant, by the design simulation.

    The prior is the fit itself (`prior_from_fit`: its constants, its bootstrap samples, the
    noise of its residuals) and the grid is the runs it used (`single`, and `multi` for Eq. 7/8:
    anything with N, D, U arrays); the target compute is 100 x the largest run.
    """
    prior = prior_from_fit(doc, "the fit")
    points = [Point(float(n), float(d), float(d)) for n, d in zip(single.N, single.D, strict=True)]
    with_rstar = multi is not None and len(multi.N) > 0 and "R_star_N" in doc.get("params", {})
    if with_rstar:
        points += [
            Point(float(n), float(d), float(u)) for n, d, u in zip(multi.N, multi.D, multi.U, strict=True)
        ]
    target = 100.0 * max(p.flops for p in points)
    return prior, evaluate_grid(
        "finished runs",
        points,
        prior,
        n_sims=n_sims,
        seed=seed,
        target_flops=target,
        with_rstar=with_rstar,
        huber_delta=float(doc.get("huber_delta") or paper.HUBER_DELTA),
    )


def identification_blocks(doc: dict, single, multi=None, *, n_sims: int = REPORT_SIMS) -> list:
    """Report blocks (heading, paragraphs, table) for `identification_of_fit`."""
    prior, res = identification_of_fit(doc, single, multi, n_sims=n_sims)

    def g(v):
        if v is None:
            return "-"
        return f"{v:.4g}" if np.isfinite(v) else ("inf" if v > 0 else "-inf")

    rows = []
    for k, c in res.constants.items():
        iv = c["interval"]
        rows.append(
            [
                k,
                g(c["center"]),
                f"[{g(iv[0])}, {g(iv[1])}]" if iv else c.get("reason", "-"),
                g(c["factor"]),
                "-" if c["at_bounds"] is None else f"{100 * c['at_bounds']:.0f}%",
                "yes" if c["identified"] else "no",
            ]
        )
    spread = (
        f"its {len(prior.samples)} bootstrap samples as the spread of the true law"
        if prior.samples is not None
        else "its constants as the true law"
    )
    ex = res.extrapolation
    iv = ex.get("interval") or [None, None]
    missing = [k for k, c in res.constants.items() if not c["identified"]]
    verdict = (
        f"Not identified by these runs: {', '.join(missing)}."
        if missing
        else "Every constant is identified by these runs."
    )
    return [
        ("h2", "How well these runs identify the law (simulated studies)"),
        (
            "p",
            f"{n_sims} studies simulated on exactly these runs (N, D, U_D), losses drawn from the "
            f"fitted law ({spread}) with log-normal noise of sigma {prior.noise:.3g} (the RMSE "
            "of the fit's log residuals), each refitted as `slmscale fit` fits; the interval is "
            "that of the refits around the fitted value (`slmscale design`, docs/design.md). "
            f"Identified: {RULE}. {verdict}",
        ),
        ("table", ["constant", "fitted", "95% interval of refits", "hi / lo", "on edge", "identified"], rows),
        (
            "p",
            f"Extrapolated compute-optimal loss at C = {ex['target_flops']:.3g} FLOPs (100 x the "
            f"largest run): 95% of refits within [{g(iv[0] and 100 * iv[0])}%, "
            f"{g(iv[1] and 100 * iv[1])}%] of the true loss.",
        ),
    ]
