"""The runs table (DESIGN.md "Runs table"): validate it, keep the good runs, list the bad ones.

Input is a mapping column -> sequence, whatever its source (an MLflow search, a CSV or Parquet
file).  Required: `params` (N), `tokens` (D), `loss`.  Optional: `unique_tokens` (U_D; absent or
empty means single epoch), `flops` (default 6 N D), `run_id` (default `row<k>`, 1-based),
`status` (anything but FINISHED is excluded), `model_size`, `tokenizer`, and downstream metric
columns.  Rows are sorted by (N, D, U_D, run_id) so the fit does not depend on input order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from slmscale.errors import UserError
from slmscale.tracking.schema import DOWNSTREAM_METRICS

REQUIRED = ("params", "tokens", "loss")


@dataclass
class RunsTable:
    run_id: list[str]
    N: np.ndarray
    D: np.ndarray
    U: np.ndarray  # unique tokens, capped at D
    loss: np.ndarray
    flops: np.ndarray
    model_size: list[str]
    tokenizer: list[str]
    metrics: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.run_id)

    @property
    def single_epoch(self) -> np.ndarray:
        return self.U >= self.D * (1 - 1e-9)

    def subset(self, mask) -> RunsTable:
        idx = np.asarray(mask)
        idx = np.flatnonzero(idx) if idx.dtype == bool else idx.astype(int)
        pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
        return RunsTable(
            pick(self.run_id),
            self.N[idx],
            self.D[idx],
            self.U[idx],
            self.loss[idx],
            self.flops[idx],
            pick(self.model_size),
            pick(self.tokenizer),
            {k: v[idx] for k, v in self.metrics.items()},
        )


def _float(v) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return math.nan
    return x


def _floats(col: Sequence | None, n: int) -> np.ndarray:
    if col is None:
        return np.full(n, np.nan)
    return np.array([_float(v) for v in col], dtype=float)


def _strings(col: Sequence | None, n: int, default: str = "") -> list[str]:
    if col is None:
        return [default] * n
    out = []
    for v in col:
        bad = v is None or (isinstance(v, float) and math.isnan(v))
        out.append(default if bad else str(v))
    return out


def _reason(i, N, D, L, status, seen_ids, run_ids) -> str | None:
    if status[i] and status[i] != "FINISHED":
        return f"status {status[i]} (not finished)"
    if run_ids[i] in seen_ids:
        return "duplicate run_id"
    if not (np.isfinite(N[i]) and N[i] > 0):
        return "params (N) missing or not a positive number"
    if not (np.isfinite(D[i]) and D[i] > 0):
        return "tokens (D) missing or not a positive number"
    if not np.isfinite(L[i]):
        return "loss missing or NaN (no final test loss logged)"
    if L[i] <= 0:
        return f"loss {L[i]:g} is not positive"
    return None


def validate_runs(
    columns: Mapping[str, Sequence], source: str
) -> tuple[RunsTable, list[dict[str, str]]]:
    """Clean runs (sorted) and the excluded ones as [{"run_id", "reason"}].

    Raises UserError when a required column is missing: nothing could be fitted from it.
    """
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise UserError(
            f"{source}: runs table lacks column(s) {', '.join(missing)} "
            f"(has: {', '.join(sorted(columns)) or 'none'}); "
            f"required: {', '.join(REQUIRED)}"
        )
    n = len(columns["loss"])
    run_ids = _strings(columns.get("run_id"), n)
    run_ids = [r or f"row{i + 1}" for i, r in enumerate(run_ids)]
    N, D, L = (_floats(columns[c], n) for c in REQUIRED)
    U = _floats(columns.get("unique_tokens"), n)
    U = np.where(np.isfinite(U) & (U > 0), np.minimum(U, D), D)
    flops = _floats(columns.get("flops"), n)
    flops = np.where(np.isfinite(flops) & (flops > 0), flops, 6.0 * N * D)
    status = _strings(columns.get("status"), n)
    excluded, keep, seen = [], [], set()
    for i in range(n):
        reason = _reason(i, N, D, L, status, seen, run_ids)
        if reason:
            excluded.append({"run_id": run_ids[i], "reason": reason})
        else:
            keep.append(i)
        seen.add(run_ids[i])
    keep.sort(key=lambda i: (N[i], D[i], U[i], run_ids[i]))
    metrics = {m: _floats(columns[m], n) for m in DOWNSTREAM_METRICS if m in columns}
    table = RunsTable(
        run_ids,
        N,
        D,
        U,
        L,
        flops,
        _strings(columns.get("model_size"), n),
        _strings(columns.get("tokenizer"), n),
        metrics,
    ).subset(keep)
    excluded.sort(key=lambda e: (e["run_id"], e["reason"]))
    return table, excluded
