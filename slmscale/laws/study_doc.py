"""The pieces of a study beside the law, and the fit.json document they fill (`study.run_study`).

Envelopes and downstream relations under the chosen FLOPs definition, the chance test of each
benchmark, per-tokenizer fits with their own intervals, and the document: DESIGN.md's keys, the
additions of docs/laws.md ("fit.json additions"), rounded so the same runs give the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from slmscale import paper
from slmscale.errors import UserError
from slmscale.laws import quality, verdicts
from slmscale.laws.chance import chance_test, items_of
from slmscale.laws.chinchilla import N_PARAMS, PARAM_NAMES, fit_chinchilla
from slmscale.laws.compute_optimal import ComputeOptimal
from slmscale.laws.downstream import fit_linear_relation
from slmscale.laws.flops import six_nd
from slmscale.laws.gamma import CHANCE, DEFINITION, gamma_q
from slmscale.laws.powerlaw import envelope_law
from slmscale.laws.table import RunsTable
from slmscale.laws.table3 import gamma_doc, table3_rows
from slmscale.tracking.schema import M_TEST_LOSS

SIG_DIGITS = 6
FLOPS_TEXT = {
    "6nd": "6nd: C = 6 N D (the paper's)",
    "full": "full: 6 N D plus attention over the context and the output layer (--flops full)",
}


def rounded(x, sig: int = SIG_DIGITS):
    """Recursively round floats to `sig` significant digits (NaN/inf become None)."""
    if isinstance(x, dict):
        return {k: rounded(v, sig) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [rounded(v, sig) for v in x]
    if isinstance(x, np.ndarray):
        return rounded(x.tolist(), sig)
    if isinstance(x, bool | int | np.integer | np.bool_ | str) or x is None:
        return bool(x) if isinstance(x, np.bool_) else int(x) if isinstance(x, np.integer) else x
    x = float(x)
    return float(f"{x:.{sig - 1}e}") if np.isfinite(x) else None


def run_flops(t: RunsTable, flops: str) -> np.ndarray:
    """Each run's training compute under the chosen definition (`flops.py`)."""
    if flops == "6nd":
        return t.flops
    full = t.flops_full if t.flops_full is not None else np.full(len(t), np.nan)
    missing = [r for r, f in zip(t.run_id, full, strict=True) if not np.isfinite(f)]
    if missing:
        raise UserError(
            f"--flops full: {len(missing)} run(s) have no flops_full (e.g. {missing[0]}); give a "
            "flops_full column, or fit with --flops 6nd"
        )
    return full


def base_doc(fit, law, huber_delta, excluded, source, single, flops) -> dict:
    return {
        "law": law,
        "params": fit.params.as_dict(),
        "ci95": {k: [None, None] for k in PARAM_NAMES},
        "huber_delta": huber_delta,
        "n_points": fit.n_points,
        "objective": fit.objective,
        "excluded": sorted(
            ({"run_id": e["run_id"], "reason": e["reason"]} for e in excluded),
            key=lambda e: (e["run_id"], e["reason"]),
        ),
        "compute_optimal": ComputeOptimal.from_params(fit.params).as_dict(),
        "source": source,
        "runs_used": single.run_id,
        "tokenizer": single.tokenizer[0] or None,
        "flops_definition": flops,
        "paper": {"table4": paper.TABLE4, "table3_gamma_q": paper.TABLE3_GAMMA_Q},
    }


def add_data_constrained(study) -> None:
    dc, multi, doc = study.data_constrained, study.multi, study.doc
    doc["params"].update(R_star_N=dc.R_star_N, R_star_D=dc.R_star_D)
    doc["ci95"].update({"R_star_N": [None, None], "R_star_D": [None, None]})
    doc["data_constrained"] = {
        "n_points": dc.n_points,
        "objective": dc.objective,
        "ci95_method": "bootstrap over runs refitting both stages (Eq. 4 on single-epoch runs, "
        "then R* on multi-epoch runs with that replicate's Eq. 4), hulled with simulated "
        "studies at the fitted law (verdicts)",
        "profile_ci95": dc.ci95,
        "profile_ci95_method": "profile likelihood with Eq. 4 frozen at its estimate (Huber as "
        "half sum of squares, chi2_1 0.95; None = unbounded within R* in [0.1, 1e4]); it "
        "ignores the uncertainty of Eq. 4 and under-covers, shown for the profile figure only",
        "runs_used": multi.run_id,
    }
    doc["n_points"] += dc.n_points


def _curve_points(curves: Mapping[str, Sequence] | None, single: RunsTable, flops: str):
    """(C, L, run_id) of every eval point of the single-epoch runs; final points if no curves."""
    C_run = run_flops(single, flops)
    if not curves:
        return C_run, single.loss, np.array(single.run_id), "final losses (no curves given)"
    per_token = dict(zip(single.run_id, C_run / single.D, strict=True))
    rid = [str(r) for r in curves["run_id"]]
    loss = np.asarray(curves[M_TEST_LOSS], float)
    tokens = np.asarray(curves.get("tokens", np.full(len(rid), np.nan)), float)
    keep = np.array([r in per_token for r in rid], bool)
    if flops == "6nd":
        C = np.asarray(curves.get("flops", np.full(len(rid), np.nan)), float)
        n_of = dict(zip(single.run_id, single.N, strict=True))
        C = np.where(np.isfinite(C), C, six_nd([n_of.get(r, np.nan) for r in rid], tokens))
    else:  # the run's full count per token, times the tokens seen at the eval point
        C = np.array([per_token.get(r, np.nan) for r in rid]) * tokens
    keep &= np.isfinite(C) & np.isfinite(loss) & (C > 0) & (loss > 0)
    return C[keep], loss[keep], np.array(rid)[keep], "eval points of single-epoch runs"


def envelope(single: RunsTable, curves, flops: str) -> dict:
    C, L, rid, basis = _curve_points(curves, single, flops)
    idx, law = envelope_law(C, L)
    return {"C": C, "L": L, "run_id": rid, "frontier": idx, "law": law, "basis": basis}


def downstream(table: RunsTable, flops: str, n_items: float | None) -> tuple[dict, dict]:
    out, missing = {}, {}
    C_all = run_flops(table, flops)
    for m, y in sorted(table.metrics.items()):
        ok = np.isfinite(y)
        missing[m] = [r for r, good in zip(table.run_id, ok, strict=True) if not good]
        if ok.sum() < 3:
            continue
        chance = CHANCE.get(m, 0.5)
        test = chance_test(y[ok], chance, items_of(table.n_items.get(m), n_items))
        flat = test["at_chance"]
        idx, law = envelope_law(C_all[ok], y[ok], maximize=True)
        out[m] = {
            "rows": np.flatnonzero(ok),
            "C": C_all[ok],
            "y": y[ok],
            "loss": table.loss[ok],
            "frontier": idx,
            "law": None if flat else law,
            "linear": None if flat else fit_linear_relation(table.loss[ok], y[ok], chance),
            "chance": chance,
            "at_chance": flat,
            "chance_test": test,
            "gamma_q": None if flat else gamma_q(C_all[ok], y[ok], chance=chance),
        }
    return out, missing


def tokenizers(single: RunsTable, curves, huber_delta, flops, n_boot: int, seed: int) -> dict:
    """Per tokenizer (Figure 5): its own Eq. 4 fit, envelope, and intervals or why not."""
    from slmscale.laws.intervals import eq4_verdicts

    names = sorted(set(single.tokenizer))
    if len(names) < 2:
        return {}
    out = {}
    for name in names:
        t = single.subset([i for i, tk in enumerate(single.tokenizer) if tk == name])
        entry = {"table": t, "fit": None, "envelope": envelope(t, curves, flops), "reason": None}
        n, sizes = len(t), len(np.unique(t.N))
        if n >= N_PARAMS and sizes >= 2:
            entry["fit"] = fit_chinchilla(t.N, t.D, t.loss, huber_delta=huber_delta)
        else:
            entry["reason"] = f"{n} runs, {sizes} size(s): too few for Eq. 4"
        if entry["fit"] is not None and n >= 2 * N_PARAMS and n_boot > 0:
            entry["ci95"], entry["verdicts"] = eq4_verdicts(t, entry["fit"], n_boot, seed)
        elif entry["fit"] is not None:
            why = (
                "no bootstrap (--bootstrap 0)"
                if n_boot <= 0
                else f"{n} runs for {N_PARAMS} constants"
            )
            entry["not_identified_reason"] = f"not identified: {why}"
        else:
            entry["not_identified_reason"] = f"not identified: {entry['reason']}"
        out[name or "(unnamed)"] = entry
    return out


def fitted_range(used: RunsTable) -> dict:
    """The region of (C, N, D, U_D) the fit has seen: the planner warns outside it."""

    def span(x):
        return [float(np.min(x)), float(np.max(x))]

    return {
        "flops": span(used.flops),
        "params": span(used.N),
        "tokens": span(used.D),
        "unique_tokens": span(used.U),
        "epochs": span(used.D / used.U),
    }


def flops_per_token_law(t: RunsTable, flops: str) -> dict | None:
    """With --flops full: per-token compute as a power law of N over the runs, k N^p, for the
    planner's iso-FLOP lines (6 N exactly under 6nd)."""
    if flops == "6nd":
        return {"definition": "6nd", "k": 6.0, "p": 1.0}
    f = run_flops(t, flops) / t.D
    p, logk = np.polyfit(np.log(t.N), np.log(f), 1) if len(np.unique(t.N)) > 1 else (1.0, 0.0)
    if len(np.unique(t.N)) < 2:
        logk = float(np.log(np.median(f / t.N)))
    return {"definition": "full", "k": float(np.exp(logk)), "p": float(p)}


def fill(study, missing: dict, huber_delta: float) -> None:
    s, doc = study.single, study.doc
    env = study.envelope
    doc["flops_per_token"] = flops_per_token_law(s, doc["flops_definition"])
    both = {"6nd": flops_per_token_law(s, "6nd")}
    if s.flops_full is not None and np.all(np.isfinite(s.flops_full)):
        both["full"] = flops_per_token_law(s, "full")
    doc["flops_per_token_by_definition"] = both  # `plan --flops-definition` picks one
    doc["flops_definition_text"] = FLOPS_TEXT[doc["flops_definition"]]
    doc["envelope"] = {
        "basis": env["basis"],
        "n_points": int(len(env["C"])),
        "n_frontier": int(len(env["frontier"])),
        "law": env["law"].as_dict() if env["law"] else None,
        "gamma_ci95": doc["ci95"].get("envelope_gamma"),
        "flops_definition": doc["flops_definition"],
    }
    doc["downstream"] = {
        m: {
            "linear": d["linear"].as_dict() if d["linear"] else None,
            "envelope": d["law"].as_dict() if d["law"] else None,
            "runs_missing_metric": missing[m],
            "chance": d["chance"],
            "at_chance": d["at_chance"],
            "chance_test": d["chance_test"],
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
    doc["tokenizers"] = {name: _tokenizer_doc(t) for name, t in study.tokenizers.items()}
    doc["quality"] = {
        **quality.summary(study.chinchilla.params, s.N, s.D, s.loss),
        "leave_largest_size_out": quality.leave_largest_size_out(
            s.N, s.D, s.loss, huber_delta=huber_delta
        ),
        "residuals": quality.residuals(study.chinchilla.params, s.run_id, s.N, s.D, s.loss),
    }


def _tokenizer_doc(t: dict) -> dict:
    out = {
        "n_runs": len(t["table"]),
        "params": t["fit"].params.as_dict() if t["fit"] else None,
        "reason": t["reason"],
        "envelope": t["envelope"]["law"].as_dict() if t["envelope"]["law"] else None,
    }
    if "verdicts" in t:
        out["ci95"], out["verdicts"] = t["ci95"], t["verdicts"]
    else:
        out["not_identified_reason"] = t.get("not_identified_reason")
    return out


def finish_verdicts(study, n_boot: int) -> None:
    """Verdicts of every reported number; `not_identified` and `at_bounds` derived from them."""
    doc = study.doc
    v = doc.setdefault("verdicts", {})
    est = dict(zip(verdicts.LAW_KEYS, study.estimates10, strict=True))
    for k in verdicts.LAW_KEYS:
        if k not in v and (not k.startswith("R_star") or study.data_constrained is not None):
            v[k] = verdicts.not_run(k, est[k], "no bootstrap (--bootstrap 0)")
    env_law = study.envelope.get("law")
    if env_law is not None:
        v["envelope_gamma"] = _judged("envelope_gamma", env_law.gamma, doc["ci95"], n_boot)
    for m, d in study.downstream.items():
        key = f"gamma_q.{m}"
        if d["at_chance"]:
            v[key] = verdicts.not_run(key, None, "at chance (binomial test on its items)")
        else:
            g = (doc["downstream"][m]["gamma_q"] or {}).get("raw") or {}
            v[key] = _judged(key, g.get("gamma"), doc["ci95"], n_boot)
    doc["not_identified"] = sorted(k for k, x in v.items() if not x["identified"])
    doc["at_bounds"] = sorted(k for k, x in v.items() if x["edge"])


def _judged(key: str, estimate, ci95: dict, n_boot: int) -> dict:
    """An exponent judged on its runs-bootstrap interval alone (no simulation of it)."""
    if n_boot <= 0:
        return verdicts.not_run(key, estimate, "no bootstrap (--bootstrap 0)")
    if estimate is None:
        return verdicts.not_run(key, None, "no exponent (fewer than 3 envelope points)")
    out = verdicts.verdict(key, estimate, ci95.get(key), None, "not run")
    c = out["checks"]["interval"]
    out["identified"] = c == "pass"
    out["reason"] = (
        "identified: 95% interval of the runs bootstrap within the rule"
        if c == "pass"
        else f"not identified: {c}"
    )
    return out
