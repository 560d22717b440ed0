"""How the report writes a fitted number: one verdict per number, read from fit.json.

The laws decide whether a constant is identified (fit.json `verdicts`, one block per constant:
identified, interval, edge, which check failed and why); the report only renders that verdict,
it never judges an interval itself.  So Table 4, the Eq. 6 line, Figure 1's exponent, Table 3
and the per-tokenizer fits say the same thing about the same number:

- identified: `21.2 [12.8, 27.9]`;
- not identified: `21.2 (not identified)` with its interval, and the check that failed in the
  verdicts table;
- an estimate on the search-box edge (verdict `edge`): a bound, `>= 1e4 (edge)`, never a
  plain number (the box, not the data, ends it); an interval the box cut (`interval_edge`)
  reads `[23, 1e4 (edge)]`;
- no interval at all: the reason given by the fit (e.g. "not identified: 6 runs for 5
  constants"), never a bare number.

fit.json files written before `verdicts` existed (the committed reports/demo/fit.json, for one)
are rendered from their `not_identified` and `at_bounds` lists, which were the verdicts then.
"""

from __future__ import annotations

import re

EDGE_WORD = "edge"


def num(v, digits: int = 4) -> str:
    """A number in `digits` significant digits, exponents without padding (1e4, 3.3e6, 2e-5)."""
    if v is None:
        return "-"
    if isinstance(v, bool) or not isinstance(v, float | int):
        return str(v)
    if v != v or v in (float("inf"), float("-inf")):
        return "-" if v != v else ("inf" if v > 0 else "-inf")
    text = f"{v:.{digits}g}"
    return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m[1] == "-" else "") + m[2], text)


def verdict(block: dict, key: str) -> dict | None:
    """The verdict of `key` in a fit block (fit.json itself, or one `tokenizers[t]` entry).

    New fit.json: `block["verdicts"][key]` as written by the laws.  Older files: built from
    their `not_identified` / `at_bounds` lists (their verdicts then); None when the block
    says nothing about `key` (no interval was computed and no verdict given).
    """
    vs = block.get("verdicts")
    if isinstance(vs, dict):
        v = vs.get(key)
        if v is None and key == "envelope_gamma":
            v = vs.get("envelope")
        return v
    listed = block.get("not_identified")
    if listed is None:
        return None
    ci = (block.get("ci95") or {}).get(key)
    edge = "box" if key in (block.get("at_bounds") or []) else None
    if ci is None and edge is None:
        return None
    ok = key not in listed
    return {
        "identified": ok,
        "interval": ci,
        "edge": edge,
        "checks": {"interval": "pass" if ok else "fails the rule", "simulation": "not run"},
        "reason": "" if ok else "interval fails the identification rule",
    }


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def value_cell(value, v: dict | None, digits: int = 4) -> str:
    """The estimate as the report prints it, given its verdict (see the module docstring)."""
    if _missing(value):
        return "-"
    if v is None:
        return num(value, digits)
    edge = v.get("edge")
    if edge in ("lo", "hi"):  # the estimate sits on that end of the search box: a bound
        return f"{'>=' if edge == 'hi' else '<='} {num(value, digits)} ({EDGE_WORD})"
    if edge == "box":  # an old fit.json: on the edge, side not recorded
        return f"{num(value, digits)} (on the search-box {EDGE_WORD})"
    if not v.get("identified", True):
        return f"{num(value, digits)} (not identified)"
    return num(value, digits)


def interval_cell(ci, v: dict | None, digits: int = 4) -> str:
    """`[lo, hi]`; an end the search box set marked `(edge)`; `-` without an interval."""
    if not ci or ci == [None, None]:
        return "-"
    lo, hi = ci
    v = v or {}
    cut = v.get("interval_edge") if "interval_edge" in v else v.get("edge")
    lo_t = "-inf" if lo is None else num(lo, digits)
    hi_t = "inf" if hi is None else num(hi, digits)
    if cut in ("lo", "both"):
        lo_t += f" ({EDGE_WORD})"
    if cut in ("hi", "both"):
        hi_t += f" ({EDGE_WORD})"
    return f"[{lo_t}, {hi_t}]"


def with_interval(value, ci, v: dict | None, digits: int = 4, bootstrapped: bool = False) -> str:
    """Estimate and interval in one cell: `0.43 [0.38, 0.47]`, with the verdict's marks.

    `bootstrapped`: the fit ran a bootstrap, so a number left with neither interval nor
    verdict says so (`(no interval)`) instead of reading as a measurement."""
    if _missing(value):
        return "-"
    text = value_cell(value, v, digits)
    ci = (v or {}).get("interval") or ci
    if ci and ci != [None, None]:
        text += " " + interval_cell(ci, v, digits)
    elif bootstrapped and v is None:
        text += " (no interval)"
    return text


def verdict_cell(v: dict | None) -> str:
    """`identified`, or `not identified: <reason>` as the laws wrote it."""
    if v is None:
        return "no interval: not assessed"
    if v.get("identified"):
        return "identified"
    reason = v.get("reason") or "; ".join(
        f"{k}: {w}" for k, w in (v.get("checks") or {}).items() if w not in ("pass", "not run")
    )
    return not_identified_text(reason)


def not_identified_text(reason: str | None) -> str:
    """`not identified: <reason>`, whether or not the reason already starts so."""
    reason = (reason or "").strip()
    if reason.lower().startswith("not identified"):
        return reason
    return "not identified" + (f": {reason}" if reason else "")


def check_cells(v: dict | None) -> list[str]:
    """The two checks behind a verdict (interval over the runs, simulation at the fitted law)."""
    checks = (v or {}).get("checks") or {}
    return [str(checks.get("interval", "-")), str(checks.get("simulation", "-"))]


def not_identified_names(block: dict) -> list[str]:
    """Names the fit block calls not identified (verdicts, else the older list)."""
    vs = block.get("verdicts")
    if isinstance(vs, dict):
        return sorted(k for k, v in vs.items() if not v.get("identified"))
    return sorted(block.get("not_identified") or [])
