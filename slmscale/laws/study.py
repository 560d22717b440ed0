"""One runs table -> every fit of the study -> the fit.json document (DESIGN.md "fit.json").

Pure core.  `run_study` does, in order: seed repeats averaged per point (their spread kept as the
measured noise), duplicates already dropped by `table.validate_runs`; Eq. 4 on single-epoch runs,
Eq. 7/8 on multi-epoch runs (with `law="data_constrained"`); outliers by the MAD rule on the log
residuals (excluded and refitted, unless `keep_outliers`); the two bootstraps and one verdict
per number (`intervals`, `verdicts`); Eq. 6; the loss envelope (Figure 1) under the chosen FLOPs
definition; downstream relations and envelopes with the chance test (Figures 2 and 4, Table 3,
with the text reference); per-tokenizer fits (Figure 5) and fit quality.  The returned `Study`
keeps the arrays the figures need; `Study.doc` is fit.json: floats rounded to 6 significant
digits and inputs sorted, so the same runs give byte-identical output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from slmscale import paper
from slmscale.errors import UserError
from slmscale.laws import outliers, repeats, simulate, study_doc
from slmscale.laws.chinchilla import N_PARAMS, ChinchillaFit, fit_chinchilla
from slmscale.laws.data_constrained import DataConstrainedFit, fit_data_constrained
from slmscale.laws.flops import FLOPS_DEFINITIONS
from slmscale.laws.identify import RULE
from slmscale.laws.intervals import add_intervals
from slmscale.laws.reference import reference_envelopes
from slmscale.laws.table import RunsTable

LAWS = ("chinchilla", "data_constrained")
rounded = study_doc.rounded  # the rounding of fit.json (callers: design)


@dataclass
class Study:
    doc: dict
    table: RunsTable
    single: RunsTable
    chinchilla: ChinchillaFit
    data_constrained: DataConstrainedFit | None = None
    multi: RunsTable | None = None
    envelope: dict = field(default_factory=dict)  # C, L, run_id, frontier, law
    downstream: dict = field(default_factory=dict)  # metric -> {C, y, loss, frontier, law, linear}
    reference: dict = field(default_factory=dict)  # metric -> {C, y, frontier, law}
    tokenizers: dict = field(default_factory=dict)  # name -> {table, fit|None, envelope, reason}
    reference_label: str | None = None
    noise: np.ndarray | float = 0.01  # sigma of log loss per fitted run (the simulation's)
    noise_summary: dict = field(default_factory=dict)

    @property
    def fit_points(self) -> RunsTable:
        """The runs the law was fitted to: single-epoch (Eq. 4), then multi-epoch (R*)."""
        if self.multi is None:
            return self.single
        idx = [self.table.run_id.index(r) for r in self.single.run_id + self.multi.run_id]
        return self.table.subset(idx)

    @property
    def max_repeats(self) -> dict[str, float]:
        """The largest R_N, R_D (repetitions beyond the first) of the multi-epoch runs."""
        if self.multi is None or self.data_constrained is None:
            return {}
        from slmscale.laws.rstarfit import repetitions

        p = self.chinchilla.params
        row = np.array([[p.E, p.A, p.B, p.alpha, p.beta]])
        R_N, R_D = repetitions(row, self.multi.N, self.multi.D, self.multi.U)
        return {"R_star_N": float(np.max(R_N)), "R_star_D": float(np.max(R_D))}

    @property
    def estimates10(self) -> np.ndarray:
        """(10,) E, A, B, alpha, beta, R*_N, R*_D (NaN without Eq. 7/8), G, a, b."""
        p = self.chinchilla.params
        row = [p.E, p.A, p.B, p.alpha, p.beta, np.nan, np.nan]
        if self.data_constrained is not None:
            row[5:7] = self.data_constrained.R_star_N, self.data_constrained.R_star_D
        return simulate.with_exponents(np.array([row]))[0]


def _check_fittable(t: RunsTable, what: str, source: str, excluded: list[dict]) -> None:
    n_excl = f"; {len(excluded)} run(s) excluded" if excluded else ""
    if len(t) < N_PARAMS:
        raise UserError(
            f"{source}: {len(t)} {what} run(s) left to fit, fewer than the {N_PARAMS} parameters "
            f"of Eq. 4{n_excl}"
        )
    if len(np.unique(t.N)) < 2:
        raise UserError(
            f"{source}: all {what} runs have one model size (N={t.N[0]:g}); Eq. 4 needs runs "
            f"of at least two sizes to separate A/N^alpha from E{n_excl}"
        )


def _main_tokenizer(table: RunsTable, excluded: list, tokenizer: str | None, label: str):
    """Keep one tokenizer's runs for the main fit: `tokenizer`, else the one with most runs.

    Laws of different tokenizations are different laws (Table 4); the others are fitted
    separately for Figure 5 and listed as excluded from the main fit.
    """
    names = sorted(set(table.tokenizer))
    if tokenizer is None and len(names) < 2:
        return table, excluded
    if tokenizer is None:
        tokenizer = max(names, key=lambda n: (table.tokenizer.count(n), n))
    elif tokenizer not in names:
        raise UserError(f"{label}: no runs with tokenizer {tokenizer!r} (has: {', '.join(names)})")
    keep = [t == tokenizer for t in table.tokenizer]
    excluded = excluded + [
        {"run_id": r, "reason": f"tokenizer {t} (main fit: {tokenizer}); fitted separately"}
        for r, t, k in zip(table.run_id, table.tokenizer, keep, strict=True)
        if not k
    ]
    return table.subset(np.array(keep, bool)), excluded


def _fit_law(table: RunsTable, law: str, label: str, huber_delta: float):
    """(single, fit, multi, dc): Eq. 4 on the single-epoch runs, Eq. 7/8 on the others."""
    single = table.subset(table.single_epoch)
    fit = fit_chinchilla(single.N, single.D, single.loss, huber_delta=huber_delta)
    if law != "data_constrained":
        return single, fit, None, None
    multi = table.subset(~table.single_epoch)
    if len(multi) < 3:
        raise UserError(
            f"{label}: --law data_constrained needs >= 3 multi-epoch runs (unique_tokens < "
            f"tokens); found {len(multi)}"
        )
    dc = fit_data_constrained(
        fit.params, multi.N, multi.D, multi.U, multi.loss, huber_delta=huber_delta
    )
    return single, fit, multi, dc


def _log_residuals(table: RunsTable, fit: ChinchillaFit, dc) -> np.ndarray:
    """log L - log L_hat of every run of `table`: Eq. 4, or Eq. 7/8 for multi-epoch runs."""
    p = fit.params
    row = [[p.E, p.A, p.B, p.alpha, p.beta, np.nan, np.nan]]
    if dc is not None:
        row[0][5:7] = dc.R_star_N, dc.R_star_D
    pred = simulate.true_losses(np.array(row), table.N, table.D, table.U)[0]
    if dc is None:
        pred = np.where(table.single_epoch, pred, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.log(table.loss) - np.log(pred)


def _noise(study: Study, spread: dict | None) -> None:
    """The sigma of log loss the simulation draws: the seed spread, else the residuals'."""
    t = study.fit_points
    r = _log_residuals(t, study.chinchilla, study.data_constrained)
    r = r[np.isfinite(r)]
    p = N_PARAMS + (2 if study.data_constrained is not None else 0)
    resid = float(np.sqrt(np.sum(r**2) / max(r.size - p, 1)))
    seed_log = ((spread or {}).get("metrics", {}).get("loss") or {}).get("pooled_std_log")
    if seed_log:
        k = np.array([len(m) for m in t.run_members()], float)
        study.noise = seed_log / np.sqrt(k)  # the fit sees each point's mean over its seeds
        study.noise_summary = {"sigma": seed_log, "source": "seed spread", "residual_sigma": resid}
    else:
        study.noise = max(resid, 1e-4)
        study.noise_summary = {
            "sigma": study.noise,
            "source": "residuals (log loss, sqrt(SS / (n - p))); no seed repeats",
            "residual_sigma": resid,
        }


def run_study(
    table: RunsTable,
    excluded: list[dict],
    *,
    source: dict,
    law: str = "chinchilla",
    huber_delta: float = paper.HUBER_DELTA,
    n_bootstrap: int = 0,
    seed: int = 0,
    curves: Mapping[str, Sequence] | None = None,
    reference: dict | None = None,
    reference_label: str | None = None,
    tokenizer: str | None = None,
    progress=None,
    unique_tokens_available: float | None = None,
    keep_outliers: bool = False,
    flops: str = "6nd",
    n_items: float | None = None,
) -> Study:
    """Every fit of the study on a validated runs table (see module docstring)."""
    if flops not in FLOPS_DEFINITIONS:
        raise UserError(f"--flops {flops}: choose one of {', '.join(FLOPS_DEFINITIONS)}")
    label = source.get("label", "runs")
    excluded = list(excluded)
    spread = repeats.seed_spread(table)
    table = repeats.by_point(table)
    all_runs = table
    table, excluded = _main_tokenizer(table, excluded, tokenizer, label)
    if law == "chinchilla":
        excluded += [
            {"run_id": r, "reason": "multi-epoch run (unique_tokens < tokens): used only by "
             "--law data_constrained"}
            for r, s in zip(table.run_id, table.single_epoch, strict=True)
            if not s
        ]  # fmt: skip
    _check_fittable(table.subset(table.single_epoch), "single-epoch", label, excluded)
    single, fit, multi, dc = _fit_law(table, law, label, huber_delta)
    fitted = table if dc is not None else single
    flagged = outliers.flag(fitted.run_id, _log_residuals(fitted, fit, dc))
    for o in flagged:
        o["excluded"] = not keep_outliers
    if flagged and not keep_outliers:
        out_ids = {o["run_id"] for o in flagged}
        excluded += [{"run_id": o["run_id"], "reason": o["reason"]} for o in flagged]
        table = table.subset([i for i, r in enumerate(table.run_id) if r not in out_ids])
        _check_fittable(table.subset(table.single_epoch), "single-epoch", label, excluded)
        single, fit, multi, dc = _fit_law(table, law, label, huber_delta)
    doc = study_doc.base_doc(fit, law, huber_delta, excluded, source, single, flops)
    doc["outliers"] = flagged
    doc["outlier_rule"] = outliers.RULE + ("; kept (--keep-outliers)" if keep_outliers else "")
    doc["duplicates"] = [e for e in excluded if "same_as" in e]
    doc["seed_spread"] = spread
    study = Study(doc, table, single, fit, dc, multi)
    if dc is not None:
        study_doc.add_data_constrained(study)
    _noise(study, spread)
    study.envelope = study_doc.envelope(single, curves, flops)
    study.downstream, missing = study_doc.downstream(table, flops, n_items)
    study.reference = reference_envelopes(reference) if reference else {}
    study.reference_label = reference_label if reference else None
    doc["ci95"].update({k: [None, None] for k in ("G", "a", "b")})
    if n_bootstrap > 0:
        add_intervals(study, n_boot=n_bootstrap, seed=seed, progress=progress)
    study.tokenizers = study_doc.tokenizers(
        all_runs.subset(all_runs.single_epoch), curves, huber_delta, flops, n_bootstrap, seed
    )
    doc["compute_optimal"]["ci95"] = {k: doc["ci95"][k] for k in ("G", "a", "b")}
    doc["fitted_range"] = study_doc.fitted_range(study.fit_points)
    if unique_tokens_available:
        doc["unique_tokens_available"] = float(unique_tokens_available)
    study_doc.fill(study, missing, huber_delta)
    doc["identification_rule"] = RULE
    study_doc.finish_verdicts(study, n_bootstrap)
    study.doc = rounded(doc)
    return study
