"""The runs table (DESIGN.md "Runs table"): validate it, keep the good runs, list the bad ones.

Input is a mapping column -> sequence, whatever its source (an MLflow search, a CSV or Parquet
file).  Required: `params` (N), `tokens` (D), `loss`.  Optional: `unique_tokens` (U_D; absent or
empty means single epoch), `flops` (default 6 N D), `flops_full` (6 N D plus attention and the
output layer, for `--flops full`), `run_id` (default `row<k>`, 1-based), `status` (anything but
FINISHED is excluded), `model_size`, `tokenizer`, `seed`, downstream metric columns and, per
metric, `<metric>_n_items` (the items it was scored on, for the chance test).  Rows are sorted
by (N, D, U_D, seed, run_id) so the fit does not depend on input order.

Duplicates: a row repeating another's N, D, U_D and loss under another run id is excluded as a
duplicate of it (listed in `duplicates`) unless the two carry different `seed` values: those are
seed repeats, kept, and averaged per point by `repeats.by_point`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from slmscale.errors import UserError
from slmscale.laws.flops import six_nd
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
    seed: list[str] = field(default_factory=list)  # "" where not given
    flops_full: np.ndarray | None = None  # NaN where not given
    n_items: dict[str, np.ndarray] = field(default_factory=dict)  # metric -> items scored
    members: list[list[str]] | None = None  # run ids behind each row (seed repeats averaged)

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
            pick(self.seed) if self.seed else [],
            None if self.flops_full is None else self.flops_full[idx],
            {k: v[idx] for k, v in self.n_items.items()},
            None if self.members is None else pick(self.members),
        )

    def run_members(self) -> list[list[str]]:
        """The run ids behind each row (one each unless seed repeats were averaged)."""
        return self.members if self.members is not None else [[r] for r in self.run_id]


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
    flops = np.where(np.isfinite(flops) & (flops > 0), flops, six_nd(N, D))
    status = _strings(columns.get("status"), n)
    excluded, keep, seen = [], [], set()
    for i in range(n):
        reason = _reason(i, N, D, L, status, seen, run_ids)
        if reason:
            excluded.append({"run_id": run_ids[i], "reason": reason})
        else:
            keep.append(i)
        seen.add(run_ids[i])
    seeds = _strings(columns.get("seed"), n)
    seeds = [_seed_text(s) for s in seeds]
    keep.sort(key=lambda i: (N[i], D[i], U[i], seeds[i], run_ids[i]))
    metrics = {m: _floats(columns[m], n) for m in DOWNSTREAM_METRICS if m in columns}
    n_items = {m: _floats(columns[f"{m}_n_items"], n) for m in metrics if f"{m}_n_items" in columns}
    full = _floats(columns.get("flops_full"), n)
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
        seeds,
        np.where(np.isfinite(full) & (full > 0), full, np.nan),
        n_items,
    ).subset(keep)
    table, duplicates = drop_duplicates(table)
    excluded += duplicates  # {"run_id", "reason", "same_as"}: fit.json lists them again
    excluded.sort(key=lambda e: (e["run_id"], e["reason"]))
    return table, excluded


def _seed_text(s: str) -> str:
    """'1.0' and '1' are the same seed (a CSV column read as floats)."""
    try:
        x = float(s)
    except ValueError:
        return s
    return str(int(x)) if x.is_integer() else s


def drop_duplicates(table: RunsTable) -> tuple[RunsTable, list[dict]]:
    """(table without duplicate rows, [{"run_id", "reason", "same_as"}]).

    A duplicate repeats an earlier row's (N, D, U_D, loss) exactly, under another run id, and
    its seed is the same or not given: a copied row would otherwise count twice and shrink every
    interval.  Rows with different seeds are seed repeats and stay.
    """
    seen: dict[tuple, int] = {}
    keep, dups = [], []
    for i, rid in enumerate(table.run_id):
        key = (table.N[i], table.D[i], table.U[i], table.loss[i])
        j = seen.get(key)
        seed_repeat = j is not None and table.seed and table.seed[i] and table.seed[j]
        if j is not None and not (seed_repeat and table.seed[i] != table.seed[j]):
            reason = (
                f"duplicate of {table.run_id[j]} (same params, tokens, unique tokens and loss); "
                "counted once"
            )
            dups.append({"run_id": rid, "reason": reason, "same_as": table.run_id[j]})
            continue
        seen.setdefault(key, i)
        keep.append(i)
    return (table.subset(keep) if dups else table), dups
