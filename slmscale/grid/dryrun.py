"""`slmscale grid SPEC --dry-run`: the trial table, printed without starting Ray."""

from __future__ import annotations

import json
import math

from slmscale.config.grid import GridSpec
from slmscale.grid.expand import DataInfo, Trial, gpu_hours


def _si(x: float) -> str:
    for unit, scale in (("P", 1e15), ("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def _floor2(x: float) -> str:
    """Passes are floored, not rounded: 0.999 of the data is not a full pass (the paper's 0.99)."""
    return f"{math.floor(x * 100 + 1e-9) / 100:.2f}"


def trial_rows(spec: GridSpec, trials: list[Trial]) -> list[dict]:
    rows = []
    for t in trials:
        row = t.row()
        if spec.throughput is not None:
            row["gpu_hours"] = gpu_hours(t, spec.throughput.mfu, spec.throughput.peak_flops)
        rows.append(row)
    return rows


def render_json(spec: GridSpec, trials: list[Trial]) -> str:
    return json.dumps(trial_rows(spec, trials), indent=2)


def render_table(spec: GridSpec, data: DataInfo, trials: list[Trial]) -> str:
    """A fixed-width table, one trial a line, totals at the bottom."""
    has_gpu = spec.throughput is not None
    head = ["trial_key", "size", "N", "D", "U_D", "epochs", "passes", "steps", "warmup", "FLOPs"]
    if has_gpu:
        head.append("GPU-h")
    lines = []
    for r in trial_rows(spec, trials):
        cells = [
            r["trial_key"],
            r["model_size"],
            _si(r["n_params"]),
            _si(r["tokens"]),
            _si(r["unique_tokens"]),
            f"{r['epochs']:.2f}",
            _floor2(r["passes"]),
            f"{r['steps']:,}",
            f"{r['warmup_steps']:,}",
            f"{r['flops']:.3g}",
        ]
        if has_gpu:
            cells.append(f"{r['gpu_hours']:,.1f}")
        lines.append(cells)
    total_flops = sum(t.flops for t in trials)
    total = [
        "TOTAL",
        f"{len(trials)} trials",
        "",
        _si(sum(t.tokens for t in trials)),
        "",
        "",
        "",
        f"{sum(t.steps for t in trials):,}",
        "",
        f"{total_flops:.3g}",
    ]
    if has_gpu:
        total.append(f"{sum(r['gpu_hours'] for r in trial_rows(spec, trials)):,.1f}")
    widths = [max(len(str(c)) for c in col) for col in zip(head, *lines, total, strict=True)]

    def fmt(cells):
        return "  ".join(
            str(c).rjust(w) if i > 1 else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    where = "present" if data.present else "declared (units not present locally)"
    out = [
        f"grid {spec.name}: {len(trials)} trials; tokenizer {data.tokenizer}; "
        f"training tokens available {_si(data.available_tokens)} ({where}); context {spec.context}",
        fmt(head),
        fmt(["-" * w for w in widths]),
        *[fmt(c) for c in lines],
        fmt(["-" * w for w in widths]),
        fmt(total),
    ]
    if has_gpu:
        tp = spec.throughput
        out.append(
            f"GPU-hours at MFU {tp.mfu:.0%} of {tp.peak_flops:.3g} FLOP/s{' (' + tp.gpu + ')' if tp.gpu else ''}, "
            "counting 6N + attention FLOPs per token"
        )
    return "\n".join(out)
