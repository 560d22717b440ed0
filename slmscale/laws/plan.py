"""Budget questions answered from a fit (`slmscale plan`): pure arithmetic on fit.json.

Forward, a compute budget C:
- with a data-constrained fit (R*_N, R*_D) and the unique tokens available U_D: the allocation
  (N, D, epochs = D / U_D) minimising Eq. 7/8 on the iso-FLOP line 6 N D = C, found by a
  coarse-then-fine search over log N (the loss along the line is smooth and single-troughed);
  beside it the Eq. 6 allocation (which assumes unlimited unique data), its Eq. 7/8 loss, the
  penalty of ignoring the data limit, and the compute at which Eq. 4 reaches that loss;
- otherwise: Eq. 6 (N_opt, D_opt, Eq. 4 at the optimum); when U_D is known the epochs Eq. 6
  asks for are shown with a warning that the fit has no R* to price them.
Every number has a 95% interval over the bootstrap samples stored in fit.json (each replicate
re-derives its own allocation; metric predictions use that replicate's loss-to-metric line).

Inverse, a target loss (or a metric, mapped to a loss through its line): the least compute
whose best allocation reaches it, under the same law as the forward question (Eq. 7/8 with
U_D when it applies, else Eq. 6), by bisection on log C, for the estimate and every replicate.

Compute follows the fit's definition (`flops_definition`): under "6nd" the iso-FLOP line is
6 N D = C (Eq. 6 in closed form); under "full" it is f(N) D = C with f(N) = k N^p the per-token
full count fitted over the runs (fit.json `flops_per_token`), and the allocation is searched
numerically.  Predicted metrics stay inside [chance, 1]: the bounded link of the loss-to-metric
relation (`downstream.LinearRelation.bounded`), the plateau (with its bootstrap spread) past
saturation.  The answer lists the constants the fit does not identify (its verdicts).

The planner warns when C, N or D lie outside the range the fit has seen, by how many orders
of magnitude.
"""

from __future__ import annotations

import numpy as np

from slmscale.errors import UserError
from slmscale.laws.downstream import LinearRelation, link_inverse
from slmscale.laws.plan_law import (  # noqa: F401 (COLUMNS, loss, loss_floor: callers' names)
    COLUMNS,
    best_allocation,
    compute_for_losses,
    data_limited,
    eq6_allocation,
    law_rows,
    loss,
    loss_floor,
    per_token,
    tokens_for,
)


def _relations(doc: dict) -> dict[str, LinearRelation]:
    out = {}
    for m, d in (doc.get("downstream") or {}).items():
        if d.get("linear") and not d.get("at_chance"):
            out[m] = LinearRelation(**d["linear"])
    return out


def gpu_hours(C: float, tokens, *, mfu=None, peak_flops=None, tokens_per_sec=None):
    """Hours on one GPU: C / (mfu x peak) or D / throughput (None when neither is given)."""
    if tokens_per_sec:
        return np.asarray(tokens, float) / tokens_per_sec / 3600.0
    if mfu and peak_flops:
        return np.full(np.shape(tokens), C / (mfu * peak_flops) / 3600.0)
    return None


def _orders(x: float, lo: float, hi: float) -> float:
    return float(np.log10(x / hi)) if x > hi else float(np.log10(lo / x)) if x < lo else 0.0


def range_warnings(doc: dict, **values: float) -> list[str]:
    """A line per value outside the fitted range of its kind (flops, params, tokens)."""
    rng = doc.get("fitted_range") or {}
    names = {"flops": ("C", "compute"), "params": ("N", "parameters"), "tokens": ("D", "tokens")}
    out = []
    for kind, x in values.items():
        if kind not in rng or x is None or not np.isfinite(x):
            continue
        lo, hi = rng[kind]
        k = _orders(x, lo, hi)
        if k > 0:
            sym, what = names[kind]
            side = "above the largest" if x > hi else "below the smallest"
            out.append(
                f"extrapolation: {sym} = {x:.3g} is {k:.1f} orders of magnitude {side} {what} "
                f"fitted ({lo:.3g}-{hi:.3g}); intervals assume the law holds out there"
            )
    return out


def _unique_tokens(doc: dict, unique_tokens: float | None) -> float | None:
    u = unique_tokens if unique_tokens is not None else doc.get("unique_tokens_available")
    if u is not None and not u > 0:
        raise UserError(f"--unique-tokens {u:g}: must be a positive count")
    return None if u is None else float(u)


def _ci(x) -> list[float | None]:
    """2.5th / 97.5th percentiles of the finite samples ([None, None] with fewer than two)."""
    s = np.asarray(x if x is not None else [], float).ravel()
    s = s[np.isfinite(s)]
    if s.size < 2:
        return [None, None]
    lo, hi = np.percentile(s, [2.5, 97.5])
    return [float(lo), float(hi)]


def plan_for_compute(doc: dict, C: float, *, unique_tokens: float | None = None, **throughput):
    """The answer for a compute budget C (see the module docstring); a dict of plain numbers."""
    if not C > 0:
        raise UserError(f"--flops: {C} is not a positive compute budget")
    point, rows = law_rows(doc)
    U_D = _unique_tokens(doc, unique_tokens)
    aware = U_D is not None and bool(data_limited(point)[0])
    fpt = per_token(doc)
    full = fpt != (6.0, 1.0)
    N6, D6 = (float(x[0]) for x in eq6_allocation(point, C))
    if full:  # no closed form on f(N) D = C: the Eq. 4 optimum by search
        N6, D6 = (float(x[0]) for x in best_allocation(point, C, None, fpt)[:2])
    if aware:
        bn, bd, bl, be = best_allocation(point, C, U_D, fpt)
        n, d, L, edge = float(bn[0]), float(bd[0]), float(bl[0]), bool(be[0])
    else:
        n, d, edge = N6, D6, False
        L = float(loss(point, [[N6]], [[D6]], None)[0, 0])
    out = {
        "flops": C,
        "flops_definition": doc.get("flops_definition", "6nd"),
        "law": "Eq. 7/8 with U_D (data-aware)" if aware else "Eq. 6 / Eq. 4 (unlimited data)",
        "unique_tokens": U_D,
        "N_opt": n,
        "D_opt": d,
        "epochs": d / U_D if U_D else None,
        "loss": L,
        "loss_ci95": None,
        "ci95": {},
        "metrics": {},
        "warnings": [],
    }
    S = len(rows)
    if S:
        if aware or full:
            sn, sd, sl, _ = best_allocation(rows, C, U_D if aware else None, fpt)
        else:
            sn, sd = eq6_allocation(rows, C)
            sl = loss(rows, sn[:, None], sd[:, None], None)[:, 0]
        out["ci95"] = {"N_opt": _ci(sn), "D_opt": _ci(sd), "loss": _ci(sl)}
        if U_D:
            out["ci95"]["epochs"] = _ci(sd / U_D)
        out["loss_ci95"] = out["ci95"]["loss"]
    else:
        sn = sd = sl = None
    if aware:
        eq6 = _eq6_beside(point, rows, C, U_D, sl, fpt)
        out["eq6"] = eq6
        out["penalty"] = eq6["loss_eq7"] - L
        out["ci95"]["penalty"] = eq6.pop("_penalty_ci")
    elif U_D:
        out["warnings"].append(
            f"the fit has no R* (law {doc.get('law')}): Eq. 6 asks for {D6 / U_D:.3g} epochs "
            f"over U_D = {U_D:.4g} unique tokens, which it prices as fresh data; fit with "
            "--law data_constrained on multi-epoch runs to plan with the data limit"
        )
    if aware:
        out["N_within_1e-3"] = _flat_range(point, C, U_D, L, fpt)
    if edge:
        out["warnings"].append(
            "the best N lies on the edge of the searched range (1e-3..1e3 x N_opt)"
        )
    _metrics(doc, out, L, sl)
    gh = gpu_hours(C, d, **throughput)
    out["gpu_hours"] = None if gh is None else float(gh)
    if gh is not None and sd is not None:
        out["ci95"]["gpu_hours"] = _ci(gpu_hours(C, sd, **throughput))
    out["warnings"] += range_warnings(doc, flops=C, params=n, tokens=d)
    out["not_identified"], out["verdicts"] = _verdicts(doc)
    if out["not_identified"]:
        out["warnings"].append(
            "the fit does not identify " + ", ".join(out["not_identified"]) + " (fit.json "
            "verdicts): the intervals above carry that uncertainty"
        )
    return out


def use_definition(doc: dict, definition: str | None) -> dict:
    """The fit with its iso-FLOP lines under `definition` ("6nd" | "full"; None: the fit's)."""
    if definition is None or definition == doc.get("flops_definition", "6nd"):
        return doc
    laws = doc.get("flops_per_token_by_definition") or {}
    if definition not in laws:
        raise UserError(
            f"--flops-definition {definition}: the fit has no per-token law for it (fit with "
            "runs that carry flops_full, or keep the fit's definition)"
        )
    return {**doc, "flops_definition": definition, "flops_per_token": laws[definition]}


def _verdicts(doc: dict) -> tuple[list[str], dict]:
    """The fit's verdicts as plan states them: the same names as fit.json's `not_identified`."""
    v = doc.get("verdicts") or {}
    brief = {k: {"identified": x.get("identified"), "edge": x.get("edge")} for k, x in v.items()}
    return list(doc.get("not_identified") or []), brief


def _flat_range(point, C, U_D, L_best, fpt=(6.0, 1.0), tol: float = 1e-3) -> list[float]:
    """[min, max] N on the iso-FLOP line whose Eq. 7/8 loss is within `tol` of the best.

    With little unique data the loss is flat over a wide range of N; any N in it is as good
    (and the smallest is the cheapest to serve).
    """
    n6, _ = eq6_allocation(point, C)
    N = n6[0] * np.exp(np.linspace(np.log(1e-3), np.log(1e3), 1201))
    L = loss(point, N[None, :], tokens_for(C, N[None, :], fpt), U_D)[0]
    ok = N[L <= L_best + tol]
    return [float(ok.min()), float(ok.max())]


def _eq6_beside(point, rows, C, U_D, sl_aware, fpt=(6.0, 1.0)) -> dict:
    """The Eq. 6 allocation priced by Eq. 7/8 (the cost of ignoring the data limit)."""
    N6, D6 = (float(x[0]) for x in _unlimited(point, C, fpt))
    l7 = float(loss(point, [[N6]], [[D6]], U_D)[0, 0])
    l4 = float(loss(point, [[N6]], [[D6]], None)[0, 0])
    c_eff = float(compute_for_losses(point, l7, None, fpt=fpt)[0])
    res = {
        "N_opt": N6,
        "D_opt": D6,
        "epochs": D6 / U_D,
        "loss_eq4": l4,
        "loss_eq7": l7,
        "eq4_compute_for_that_loss": c_eff,
        "ci95": {},
        "_penalty_ci": [None, None],
    }
    if len(rows):
        sn6, sd6 = _unlimited(rows, C, fpt)
        s7 = loss(rows, sn6[:, None], sd6[:, None], U_D)[:, 0]
        s4 = loss(rows, sn6[:, None], sd6[:, None], None)[:, 0]
        res["ci95"] = {
            "N_opt": _ci(sn6),
            "D_opt": _ci(sd6),
            "loss_eq4": _ci(s4),
            "loss_eq7": _ci(s7),
        }
        res["_penalty_ci"] = _ci(s7 - sl_aware)
    return res


def _unlimited(P, C, fpt):
    """The Eq. 4 optimum on the iso-FLOP line (Eq. 6 in closed form under 6 N D)."""
    if fpt == (6.0, 1.0):
        return eq6_allocation(P, C)
    return best_allocation(P, C, None, fpt)[:2]


def _metrics(doc: dict, out: dict, L: float, sl) -> None:
    """Each benchmark's predicted accuracy, inside [chance, 1], with its interval."""
    boot = doc.get("bootstrap") or {}
    for m, rel in _relations(doc).items():
        saturated = rel.plateau is not None and L < rel.loss_min
        value, ci = _predict(rel, L), [None, None]
        link = np.asarray((boot.get("link") or {}).get(m) or [], float)
        lines = np.asarray((boot.get("linear") or {}).get(m) or [], float)
        plat = np.asarray((boot.get("plateau") or {}).get(m) or [], float)
        if saturated:
            ci = _plateau_interval(rel, plat)
        elif sl is not None and link.ndim == 2 and len(link) == len(sl):
            ci = _ci(link_inverse(link[:, 0], link[:, 1], sl, rel.chance))
        elif sl is not None and lines.ndim == 2 and len(lines) == len(sl):
            ci = _ci(np.clip(lines[:, 0] * sl + lines[:, 1], rel.chance, 1.0))
        out["metrics"][m] = {"value": value, "note": _range_note(rel, L), "ci95": ci}


def _predict(rel: LinearRelation, L: float) -> float:
    """The plateau past saturation, else the bounded link (the clipped line for old fits)."""
    if rel.plateau is not None and L < rel.loss_min:
        return float(rel.plateau)
    if rel.link_slope is not None:
        return float(rel.bounded(L))
    return float(np.clip(rel(L), rel.chance, 1.0))


def _plateau_interval(rel: LinearRelation, samples) -> list[float | None]:
    """The plateau's bootstrap spread, widened to its runs' own range: never zero width."""
    lo, hi = _ci(samples) if np.size(samples) else [None, None]
    if rel.plateau_range:
        lo = rel.plateau_range[0] if lo is None else min(lo, rel.plateau_range[0])
        hi = rel.plateau_range[1] if hi is None else max(hi, rel.plateau_range[1])
    if lo is None or hi <= lo:  # no spread in the plateau runs: one run's scatter (the line's)
        half = max(1.96 * (rel.resid_sd or 0.0), 0.005)
        lo, hi = rel.plateau - half, rel.plateau + half
    return [float(max(lo, rel.chance)), float(min(hi, 1.0))]


def compute_for_loss(doc: dict, target: float, *, unique_tokens: float | None = None, what=None):
    """(C, ci95 of C): the least compute whose best allocation reaches loss `target`.

    `what` names the question in errors (default "--target-loss X").
    """
    what = what or f"--target-loss {target:g}"
    point, rows = law_rows(doc)
    U_D = _unique_tokens(doc, unique_tokens)
    aware = U_D is not None and bool(data_limited(point)[0])
    E = float(point[0, 0])
    if target <= E:
        raise UserError(
            f"{what}: loss {target:.4g} is at or below the irreducible loss E = {E:.4g}: no "
            "compute reaches it"
        )
    if aware:
        floor = float(loss_floor(point, U_D)[0])
        if target <= floor:
            raise UserError(
                f"{what}: loss {target:.4g} is below {floor:.4g}, the best Eq. 7/8 allows with "
                f"U_D = {U_D:.4g} unique tokens at any compute (more unique data is needed)"
            )
    fpt = per_token(doc)
    C = float(compute_for_losses(point, target, U_D if aware else None, fpt=fpt)[0])
    if not np.isfinite(C):
        raise UserError(f"{what}: needs more than 1e40 FLOPs")
    ci = [None, None]
    if len(rows):
        s = compute_for_losses(rows, target, U_D if aware else None, fpt=fpt)
        lo, hi = np.percentile(np.where(np.isfinite(s), s, np.inf), [2.5, 97.5])
        ci = [float(lo), float(hi) if np.isfinite(hi) else None]
    return C, ci


def loss_for_metric(doc: dict, metric: str, value: float) -> float:
    ds = (doc.get("downstream") or {}).get(metric) or {}
    if ds.get("at_chance"):
        raise UserError(
            f"--target {metric}={value:g}: {metric} never beat chance in the fitted runs; "
            "there is no relation to loss to invert"
        )
    rels = _relations(doc)
    if metric not in rels:
        raise UserError(
            f"--target {metric}: the fit has no linear relation for {metric} "
            f"(has: {', '.join(sorted(rels)) or 'none'})"
        )
    rel = rels[metric]
    if not rel.chance < value < 1.0:
        raise UserError(
            f"--target {metric}={value:g}: outside ({rel.chance:g}, 1), where the bounded link "
            "lives"
        )
    L = rel.loss_for(value)
    if rel.plateau is not None and L < rel.loss_min:
        raise UserError(
            f"--target {metric}={value:g}: needs loss {L:.4g}, below {rel.loss_min:.4g} where "
            f"{metric} saturates at {rel.plateau:.4g} in the fitted runs"
        )
    return float(L)


def _range_note(rel: LinearRelation, L: float) -> str | None:
    if rel.plateau is not None and L < rel.loss_min:
        return f"saturated: loss {L:.4g} below {rel.loss_min:.4g}; the plateau is given"
    if not rel.loss_min <= L <= rel.loss_max:
        return f"extrapolated: loss {L:.4g} outside [{rel.loss_min:.4g}, {rel.loss_max:.4g}]"
    return None
