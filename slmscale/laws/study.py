"""One runs table -> every fit of the study -> the fit.json document (DESIGN.md "fit.json").

Pure core.  `run_study` does, in order: Eq. 4 on single-epoch runs (+ bootstrap), Eq. 6, Eq. 7/8
on multi-epoch runs (with `law="data_constrained"`), the loss envelope (Figure 1), downstream
relations and envelopes (Figures 2 and 4, Table 3, with the text reference), per-tokenizer fits
(Figure 5) and fit quality.  The returned `Study` keeps the arrays the figures need; `Study.doc`
is fit.json: floats rounded to 6 significant digits and inputs sorted, so the same runs give
byte-identical output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from slmscale import paper
from slmscale.errors import UserError
from slmscale.laws import quality
from slmscale.laws.chinchilla import (
    N_PARAMS,
    PARAM_NAMES,
    THETA_BOUNDS,
    ChinchillaFit,
    at_search_bounds,
    fit_chinchilla,
)
from slmscale.laws.compute_optimal import ComputeOptimal
from slmscale.laws.data_constrained import (
    LOG10_RSTAR_RANGE,
    DataConstrainedFit,
    fit_data_constrained,
)
from slmscale.laws.downstream import fit_linear_relation
from slmscale.laws.gamma import CHANCE, DEFINITION, at_chance, gamma_q
from slmscale.laws.identify import RULE, not_identified
from slmscale.laws.intervals import add_intervals
from slmscale.laws.powerlaw import envelope_law
from slmscale.laws.reference import reference_envelopes
from slmscale.laws.table import RunsTable
from slmscale.laws.table3 import gamma_doc, table3_rows
from slmscale.tracking.schema import M_TEST_LOSS

LAWS = ("chinchilla", "data_constrained")
SIG_DIGITS = 6


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


def rounded(x, sig: int = SIG_DIGITS):
    """Recursively round floats to `sig` significant digits (NaN/inf become None)."""
    if isinstance(x, dict):
        return {k: rounded(v, sig) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [rounded(v, sig) for v in x]
    if isinstance(x, np.ndarray):
        return rounded(x.tolist(), sig)
    if isinstance(x, bool | int | np.integer | str) or x is None:
        return int(x) if isinstance(x, np.integer) else x
    x = float(x)
    return float(f"{x:.{sig - 1}e}") if np.isfinite(x) else None


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


def _curve_points(curves: Mapping[str, Sequence] | None, single: RunsTable):
    """(C, L, run_id) of every eval point of the single-epoch runs; final points if no curves."""
    if not curves:
        return single.flops, single.loss, np.array(single.run_id), "final losses (no curves given)"
    n_of = dict(zip(single.run_id, single.N, strict=True))
    rid = [str(r) for r in curves["run_id"]]
    loss = np.asarray(curves[M_TEST_LOSS], float)
    flops = np.asarray(curves.get("flops", np.full(len(rid), np.nan)), float)
    tokens = np.asarray(curves.get("tokens", np.full(len(rid), np.nan)), float)
    keep = np.array([r in n_of for r in rid], bool)
    n = np.array([n_of.get(r, np.nan) for r in rid])
    flops = np.where(np.isfinite(flops), flops, 6.0 * n * tokens)
    keep &= np.isfinite(flops) & np.isfinite(loss) & (flops > 0) & (loss > 0)
    return flops[keep], loss[keep], np.array(rid)[keep], "eval points of single-epoch runs"


def _envelope(single: RunsTable, curves) -> dict:
    C, L, rid, basis = _curve_points(curves, single)
    idx, law = envelope_law(C, L)
    return {"C": C, "L": L, "run_id": rid, "frontier": idx, "law": law, "basis": basis}


def _downstream(table: RunsTable) -> tuple[dict, dict[str, list[str]]]:
    out, missing = {}, {}
    for m, y in sorted(table.metrics.items()):
        ok = np.isfinite(y)
        missing[m] = [r for r, good in zip(table.run_id, ok, strict=True) if not good]
        if ok.sum() < 3:
            continue
        idx, law = envelope_law(table.flops[ok], y[ok], maximize=True)
        chance = CHANCE.get(m, 0.5)
        flat = at_chance(y[ok], chance)
        out[m] = {
            "rows": np.flatnonzero(ok),
            "C": table.flops[ok],
            "y": y[ok],
            "loss": table.loss[ok],
            "frontier": idx,
            "law": None if flat else law,
            "linear": fit_linear_relation(table.loss[ok], y[ok]),
            "chance": chance,
            "at_chance": flat,
            "gamma_q": None if flat else gamma_q(table.flops[ok], y[ok], chance=chance),
        }
    return out, missing


def _tokenizers(single: RunsTable, curves, huber_delta: float) -> dict:
    names = sorted(set(single.tokenizer))
    if len(names) < 2:
        return {}
    out = {}
    for name in names:
        t = single.subset([i for i, tk in enumerate(single.tokenizer) if tk == name])
        entry = {"table": t, "fit": None, "envelope": _envelope(t, curves), "reason": None}
        if len(t) >= N_PARAMS and len(np.unique(t.N)) >= 2:
            entry["fit"] = fit_chinchilla(t.N, t.D, t.loss, huber_delta=huber_delta)
        else:
            entry["reason"] = f"{len(t)} runs, {len(np.unique(t.N))} size(s): too few for Eq. 4"
        out[name or "(unnamed)"] = entry
    return out


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


def _fit_multi(study: Study, source: str, huber_delta: float) -> None:
    multi = study.table.subset(~study.table.single_epoch)
    if len(multi) < 3:
        raise UserError(
            f"{source}: --law data_constrained needs >= 3 multi-epoch runs (unique_tokens < "
            f"tokens); found {len(multi)}"
        )
    law = study.chinchilla.params
    dc = fit_data_constrained(law, multi.N, multi.D, multi.U, multi.loss, huber_delta=huber_delta)
    study.multi, study.data_constrained = multi, dc
    doc = study.doc
    doc["params"].update(R_star_N=dc.R_star_N, R_star_D=dc.R_star_D)
    doc["ci95"].update({"R_star_N": [None, None], "R_star_D": [None, None]})
    doc["data_constrained"] = {
        "n_points": dc.n_points,
        "objective": dc.objective,
        "ci95_method": "bootstrap over runs refitting both stages (Eq. 4 on single-epoch runs, "
        "then R* on multi-epoch runs with that replicate's Eq. 4)",
        "profile_ci95": dc.ci95,
        "profile_ci95_method": "profile likelihood with Eq. 4 frozen at its estimate (Huber as "
        "half sum of squares, chi2_1 0.95; None = unbounded within R* in [0.1, 1e4]); it "
        "ignores the uncertainty of Eq. 4 and under-covers, shown for the profile figure only",
        "runs_used": multi.run_id,
    }
    doc["n_points"] += dc.n_points
    lo, hi = (10.0**x for x in LOG10_RSTAR_RANGE)
    for k in ("R_star_N", "R_star_D"):
        v = doc["params"][k]
        if v <= lo * (1 + 1e-6) or v >= hi * (1 - 1e-6):
            doc["at_bounds"] = sorted({*doc["at_bounds"], k})


def _fitted_range(table: RunsTable, single: RunsTable, multi: RunsTable | None) -> dict:
    """The region of (C, N, D, U_D) the fit has seen: the planner warns outside it."""
    used = (
        single
        if multi is None
        else table.subset(np.isin(table.run_id, single.run_id + multi.run_id))
    )

    def span(x):
        return [float(np.min(x)), float(np.max(x))]

    return {
        "flops": span(used.flops),
        "params": span(used.N),
        "tokens": span(used.D),
        "unique_tokens": span(used.U),
        "epochs": span(used.D / used.U),
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
    workers: int = 1,
    curves: Mapping[str, Sequence] | None = None,
    reference: dict | None = None,
    reference_label: str | None = None,
    tokenizer: str | None = None,
    progress=None,
    unique_tokens_available: float | None = None,
) -> Study:
    """Every fit of the study on a validated runs table (see module docstring)."""
    label = source.get("label", "runs")
    excluded = list(excluded)
    all_runs = table
    table, excluded = _main_tokenizer(table, excluded, tokenizer, label)
    if law == "chinchilla":
        excluded += [
            {
                "run_id": r,
                "reason": "multi-epoch run (unique_tokens < tokens): used "
                "only by --law data_constrained",
            }
            for r, s in zip(table.run_id, table.single_epoch, strict=True)
            if not s
        ]
    single = table.subset(table.single_epoch)
    _check_fittable(single, "single-epoch", label, excluded)
    fit = fit_chinchilla(single.N, single.D, single.loss, huber_delta=huber_delta)
    doc: dict = {
        "law": law,
        "params": fit.params.as_dict(),
        "ci95": {k: [None, None] for k in PARAM_NAMES},
        "huber_delta": huber_delta,
        "n_points": fit.n_points,
        "objective": fit.objective,
        "excluded": sorted(excluded, key=lambda e: (e["run_id"], e["reason"])),
        "compute_optimal": ComputeOptimal.from_params(fit.params).as_dict(),
        "at_bounds": at_search_bounds(fit.params),
        "source": source,
        "runs_used": single.run_id,
        "tokenizer": single.tokenizer[0] or None,
        "paper": {"table4": paper.TABLE4, "table3_gamma_q": paper.TABLE3_GAMMA_Q},
    }
    study = Study(doc, table, single, fit)
    if law == "data_constrained":
        _fit_multi(study, label, huber_delta)
    study.envelope = _envelope(single, curves)
    study.downstream, missing = _downstream(table)
    study.reference = reference_envelopes(reference) if reference else {}
    study.reference_label = reference_label if reference else None
    study.tokenizers = _tokenizers(all_runs.subset(all_runs.single_epoch), curves, huber_delta)
    doc["compute_optimal"]["ci95"] = {"G": [None, None], "a": [None, None], "b": [None, None]}
    if n_bootstrap > 0:
        add_intervals(study, n_boot=n_bootstrap, seed=seed, progress=progress)
        doc["compute_optimal"]["ci95"] = {k: doc["ci95"][k] for k in ("G", "a", "b")}
    doc["fitted_range"] = _fitted_range(table, single, study.multi)
    if unique_tokens_available:
        doc["unique_tokens_available"] = float(unique_tokens_available)
    _fill_doc(study, missing, huber_delta)
    doc["identification_rule"] = RULE
    edge = _ci_on_edge(doc["ci95"]) if n_bootstrap > 0 else []
    doc["not_identified"] = not_identified(
        doc["ci95"] if n_bootstrap > 0 else {}, [*doc["at_bounds"], *edge]
    )
    study.doc = rounded(doc)
    return study


def _ci_on_edge(ci95: dict) -> list[str]:
    """Constants whose interval reaches the search box: the box, not the data, ends it."""
    box = {
        "E": (np.exp(THETA_BOUNDS[2][0]), np.exp(THETA_BOUNDS[2][1])),
        "A": (np.exp(THETA_BOUNDS[0][0]), np.exp(THETA_BOUNDS[0][1])),
        "B": (np.exp(THETA_BOUNDS[1][0]), np.exp(THETA_BOUNDS[1][1])),
        "alpha": THETA_BOUNDS[3],
        "beta": THETA_BOUNDS[4],
        "R_star_N": tuple(10.0**x for x in LOG10_RSTAR_RANGE),
        "R_star_D": tuple(10.0**x for x in LOG10_RSTAR_RANGE),
    }
    out = []
    for k, (lo, hi) in box.items():
        ci = ci95.get(k) or [None, None]
        if ci[0] is None or ci[1] is None:
            continue
        tol = 1e-4 * (hi - lo) if k in ("alpha", "beta") else 0.0
        if ci[0] <= lo * (1 + 1e-4) + tol or ci[1] >= hi * (1 - 1e-4) - tol:
            out.append(k)
    return out


def _fill_doc(study: Study, missing: dict, huber_delta: float) -> None:
    s, doc = study.single, study.doc
    env = study.envelope
    doc["envelope"] = {
        "basis": env["basis"],
        "n_points": int(len(env["C"])),
        "n_frontier": int(len(env["frontier"])),
        "law": env["law"].as_dict() if env["law"] else None,
        "gamma_ci95": doc["ci95"].get("envelope_gamma"),
    }
    doc["downstream"] = {
        m: {
            "linear": d["linear"].as_dict() if d["linear"] else None,
            "envelope": d["law"].as_dict() if d["law"] else None,
            "runs_missing_metric": missing[m],
            "chance": d["chance"],
            "at_chance": d["at_chance"],
            "gamma_q": gamma_doc(d["gamma_q"], doc["ci95"], m),
        }
        for m, d in study.downstream.items()
    }
    doc["runs_missing_metrics"] = {m: r for m, r in missing.items() if r}
    doc["reference"] = {
        m: {
            **r["law"].as_dict(),
            "gamma_q": gamma_doc(None if r["at_chance"] else r["gamma_q"], doc["ci95"], m, "_text"),
            "text_metric": r["text_metric"],
            "at_chance": r["at_chance"],
        }
        for m, r in study.reference.items()
    }
    doc["reference_label"] = study.reference_label
    doc["gamma_q_definition"] = DEFINITION
    doc["table3"] = table3_rows(study.downstream, study.reference, doc["ci95"])
    doc["tokenizers"] = {
        name: {
            "n_runs": len(t["table"]),
            "params": t["fit"].params.as_dict() if t["fit"] else None,
            "reason": t["reason"],
            "envelope": t["envelope"]["law"].as_dict() if t["envelope"]["law"] else None,
        }
        for name, t in study.tokenizers.items()
    }
    doc["quality"] = {
        **quality.summary(study.chinchilla.params, s.N, s.D, s.loss),
        "leave_largest_size_out": quality.leave_largest_size_out(
            s.N, s.D, s.loss, huber_delta=huber_delta
        ),
        "residuals": quality.residuals(study.chinchilla.params, s.run_id, s.N, s.D, s.loss),
    }
