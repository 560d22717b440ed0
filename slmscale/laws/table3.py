"""Table 3 rows and per-benchmark gamma_q entries of fit.json (see `gamma` for the definition).

Speech and text exponents come from `gamma.gamma_q` (one function, one definition); here they
are laid out beside the paper's values with their bootstrap intervals (`ci95` keys
`gamma_q.m`, `gamma_q_text.m`, `ratio.m` and their `_error` twins).
"""

from __future__ import annotations

import numpy as np

from slmscale import paper


def value(gq: dict | None, transform: str):
    """The point estimate of one transform's gamma_q (None when absent or not finite)."""
    if not gq:
        return None
    v = float(gq[transform]["gamma"][0])
    return v if np.isfinite(v) else None


def ratio(t, s):
    return t / s if (t is not None and s) else None


def table3_rows(downstream: dict, reference: dict, ci95: dict) -> list[dict]:
    """Table 3 rows: one definition (`gamma.DEFINITION`) for speech and text, with intervals."""
    rows = []
    for m in paper.TABLE3_GAMMA_Q["speech"]:
        d, ref = downstream.get(m, {}), reference.get(m, {})
        gs, gt = d.get("gamma_q"), (None if ref.get("at_chance") else ref.get("gamma_q"))
        g_s, g_t = value(gs, "raw"), value(gt, "raw")
        e_s, e_t = value(gs, "error_rate"), value(gt, "error_rate")
        p_t, p_s = paper.TABLE3_GAMMA_Q["text"][m], paper.TABLE3_GAMMA_Q["speech"][m]
        rows.append(
            {
                "metric": m,
                "gamma_speech_ours": g_s,
                "gamma_text_reference": g_t,
                "ratio_ours": ratio(g_t, g_s),
                "gamma_speech_paper": p_s,
                "gamma_text_paper": p_t,
                "ratio_paper": p_t / p_s,
                "speech_at_chance": bool(d.get("at_chance", False)),
                "text_at_chance": bool(ref.get("at_chance", False)),
                "error_rate": {
                    "gamma_speech_ours": e_s,
                    "gamma_text_reference": e_t,
                    "ratio_ours": ratio(e_t, e_s),
                },
                "above_chance": {
                    "gamma_speech_ours": value(gs, "above_chance"),
                    "gamma_text_reference": value(gt, "above_chance"),
                },
                "ci95": {
                    "gamma_speech_ours": ci95.get(f"gamma_q.{m}"),
                    "gamma_text_reference": ci95.get(f"gamma_q_text.{m}"),
                    "ratio_ours": ci95.get(f"ratio.{m}"),
                    "error_rate.gamma_speech_ours": ci95.get(f"gamma_q_error.{m}"),
                    "error_rate.gamma_text_reference": ci95.get(f"gamma_q_text_error.{m}"),
                    "error_rate.ratio_ours": ci95.get(f"ratio_error.{m}"),
                },
            }
        )
    return rows


def gamma_doc(gq: dict | None, ci95: dict, m: str, side: str = "") -> dict | None:
    """Per transform: gamma, its interval, frontier and plateau sizes (None: at chance)."""
    if gq is None:
        return None
    keys = {"raw": f"gamma_q{side}.{m}", "error_rate": f"gamma_q{side}_error.{m}"}
    return {
        t: {
            "gamma": value(gq, t),
            "ci95": ci95.get(keys[t]) if t in keys else None,
            "n_frontier": int(v["n_frontier"][0]),
            "n_saturated": int(v["n_saturated"][0]),
        }
        for t, v in gq.items()
    }
