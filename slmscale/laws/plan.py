"""Budget questions answered from a fit (`slmscale plan`): pure arithmetic on fit.json.

Forward: a compute budget C -> N_opt, D_opt (Eq. 6, so 6 N_opt D_opt = C), the predicted loss
(Eq. 4 at the optimum) with a 95% interval over the bootstrap samples stored in fit.json (each
sample re-derives its own optimum), predicted metrics from the linear loss-to-metric relations
(the plateau where the metric saturated; extrapolation is flagged), and GPU-hours at a stated throughput.
Inverse: a target loss (or a target metric, mapped to a loss through its linear relation) ->
the compute-optimal C reaching it, found by root finding on log C.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq

from slmscale.errors import UserError
from slmscale.laws.chinchilla import PARAM_NAMES, ChinchillaParams
from slmscale.laws.compute_optimal import ComputeOptimal, optimal_loss
from slmscale.laws.downstream import LinearRelation

LOG_C_RANGE = (np.log(1e6), np.log(1e40))


def _samples(doc: dict) -> list[ChinchillaParams]:
    boot = doc.get("bootstrap") or {}
    cols = boot.get("columns", list(PARAM_NAMES))
    return [
        ChinchillaParams(**dict(zip(cols, row, strict=True))) for row in boot.get("samples", [])
    ]


def _relations(doc: dict) -> dict[str, LinearRelation]:
    out = {}
    for m, d in (doc.get("downstream") or {}).items():
        if d.get("linear"):
            out[m] = LinearRelation(**d["linear"])
    return out


def gpu_hours(C: float, tokens: float, *, mfu=None, peak_flops=None, tokens_per_sec=None):
    """Hours on one GPU: C / (mfu x peak) or D / throughput (None when neither is given)."""
    if tokens_per_sec:
        return tokens / tokens_per_sec / 3600.0
    if mfu and peak_flops:
        return C / (mfu * peak_flops) / 3600.0
    return None


def plan_for_compute(doc: dict, C: float, **throughput) -> dict:
    if not C > 0:
        raise UserError(f"--flops: {C} is not a positive compute budget")
    law = ChinchillaParams.from_dict(doc["params"])
    co = ComputeOptimal.from_params(law)
    N, D = float(co.n_opt(C)), float(co.d_opt(C))
    L = float(law.predict(N, D))
    out = {
        "flops": C,
        "N_opt": N,
        "D_opt": D,
        "loss": L,
        "loss_ci95": None,
        "metrics": {},
        "gpu_hours": gpu_hours(C, D, **throughput),
    }
    samples = _samples(doc)
    if samples:
        losses = [float(optimal_loss(s, C)) for s in samples]
        out["loss_ci95"] = [float(v) for v in np.percentile(losses, [2.5, 97.5])]
    for m, rel in _relations(doc).items():
        saturated = rel.plateau is not None and L < rel.loss_min
        out["metrics"][m] = {
            "value": rel.plateau if saturated else float(rel(L)),
            "note": _range_note(rel, L),
        }
    return out


def compute_for_loss(doc: dict, target: float) -> float:
    """The compute-optimal C whose predicted loss is `target`."""
    law = ChinchillaParams.from_dict(doc["params"])
    if target <= law.E:
        raise UserError(
            f"--target-loss {target:g} is at or below the irreducible loss "
            f"E = {law.E:.4g}: no compute reaches it"
        )
    f = lambda logC: float(optimal_loss(law, np.exp(logC))) - target  # noqa: E731
    lo, hi = LOG_C_RANGE
    if f(lo) < 0:
        return float(np.exp(lo))
    if f(hi) > 0:
        raise UserError(f"--target-loss {target:g} needs more than 1e40 FLOPs")
    return float(np.exp(brentq(f, lo, hi, xtol=1e-12)))


def loss_for_metric(doc: dict, metric: str, value: float) -> float:
    rels = _relations(doc)
    if metric not in rels:
        raise UserError(
            f"--target {metric}: the fit has no linear relation for {metric} "
            f"(has: {', '.join(sorted(rels)) or 'none'})"
        )
    rel = rels[metric]
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
