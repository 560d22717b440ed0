"""`slmscale grid SPEC --dry-run`: the trial table, printed without starting Ray."""

from __future__ import annotations

import json
import math

from slmscale import tokenstore
from slmscale import units as units_io
from slmscale.config.grid import GridSpec
from slmscale.grid.expand import DataInfo, gpu_hours, row
from slmscale.trial import Trial


def _si(x: float) -> str:
    for unit, scale in (("P", 1e15), ("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def _floor2(x: float) -> str:
    """Passes are floored, not rounded: 0.999 of the data is not a full pass (the paper's 0.99)."""
    return f"{math.floor(x * 100 + 1e-9) / 100:.2f}"


def trial_rows(spec: GridSpec, data: DataInfo, trials: list[Trial]) -> list[dict]:
    from slmscale.grid.plan import memory_plan, trial_resources

    rows = []
    for t in trials:
        r = row(t, data)
        if spec.throughput is not None:
            r["gpu_hours"] = gpu_hours(t, spec.throughput.mfu, spec.throughput.peak_flops)
        res = trial_resources(spec, t)
        mem = memory_plan(spec, t, t.n_units)
        r.update(
            workers=res.workers,
            gpus_per_worker=res.gpus_per_worker,
            cpus_per_worker=res.cpus_per_worker,
            micro_batch=mem.micro_batch,
            activation_checkpointing=mem.checkpointing,
            predicted_memory_gib=mem.predicted_gib,
            device_memory_gb=mem.device_memory_gb,
        )
        rows.append(r)
    return rows


def _resource_cells(r: dict) -> list[str]:
    """workers x GPUs, micro-batch (+ckpt: activation checkpointing), predicted/declared GiB."""
    gpus = f"{r['gpus_per_worker']:g}" if r["gpus_per_worker"] else "0"
    mb = "all" if r["micro_batch"] is None else str(r["micro_batch"])
    if r["activation_checkpointing"]:
        mb += "+ckpt"
    mem = "-"
    if r["predicted_memory_gib"] is not None:
        mem = f"{r['predicted_memory_gib']:.1f}/{r['device_memory_gb']:g}"
    return [f"{r['workers']}x{gpus}", mb, mem]


def render_json(spec: GridSpec, data: DataInfo, trials: list[Trial]) -> str:
    return json.dumps(trial_rows(spec, data, trials), indent=2)


def render_table(spec: GridSpec, data: DataInfo, trials: list[Trial]) -> str:
    """A fixed-width table, one trial a line, totals at the bottom."""
    has_gpu = spec.throughput is not None
    head = ["trial_key", "size", "N", "D", "U_D", "epochs", "passes", "steps", "warmup", "FLOPs"]
    head += ["workers x GPU", "micro-batch", "peak GiB"]
    if has_gpu:
        head.append("GPU-h")
    lines = []
    rows = trial_rows(spec, data, trials)
    for r in rows:
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
            *_resource_cells(r),
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
        "",
        "",
        "",
    ]
    if has_gpu:
        total.append(f"{sum(r['gpu_hours'] for r in rows):,.1f}")
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
            "counting 6N + 12·L·T·d FLOPs per token"
        )
    if any(r["predicted_memory_gib"] is not None for r in rows):
        out.append(
            "peak GiB: predicted peak memory per worker / declared device memory (weights, "
            "gradients, AdamW, activations of one micro-batch; slmscale.train.memory); "
            "+ckpt: activation checkpointing"
        )
    out.extend(schedule_lines(spec, data, trials))
    out.extend(mixture_lines(spec, data, trials))
    return "\n".join(out)


def schedule_lines(
    spec: GridSpec, data: DataInfo, trials: list[Trial], storage_path: str | None = None
) -> list[str]:
    """This grid's compute under its schedule and the other one (cosine runs vs WSD trunks with
    cooldowns, slmscale.grid.trunks), in FLOPs and, with a throughput, GPU-hours; for WSD, each
    trunk's length and what a previous run of the grid already saved of it."""
    from slmscale.grid.trunks import plan_trunks, schedule_cost

    cost = schedule_cost(trials, data.available_tokens)
    tp = spec.throughput

    hours = cost.gpu_hours(tp.mfu, tp.peak_flops) if tp else None

    def amount(flops: float, gpu_h: float | None) -> str:
        return f"{flops:.3g} FLOPs" + (f", {gpu_h:,.1f} GPU-h" if gpu_h is not None else "")

    cos_h, wsd_h = hours or (None, None)

    s = spec.schedule
    wsd = f"wsd ({s.cooldown_fraction:.0%} {s.cooldown_shape} cooldowns on {cost.trunks} trunks)"
    cosine = "cosine (a run per point, the paper's)"
    lines = [
        f"schedule {s.kind}: {amount(cost.wsd, wsd_h) if s.kind == 'wsd' else amount(cost.cosine, cos_h)}",
        f"  {cosine}: {amount(cost.cosine, cos_h)}",
        f"  {wsd}: {amount(cost.wsd, wsd_h)}, {cost.saved:.0%} less than cosine",
    ]
    if s.kind == "wsd":
        trunks = plan_trunks(trials, data.available_tokens)
        lines += ["  " + _trunk_line(trunk, storage_path) for trunk in trunks]
        alone = len(trials) - sum(len(t.branches) for t in trunks)
        if alone:
            lines.append(f"  {alone} points train alone (no other budget shares their data)")
    return lines


def _trunk_line(trunk, storage_path: str | None) -> str:
    steps = trunk.branch_steps()
    line = (
        f"trunk {trunk.trial.model_size} ({trunk.key}): {trunk.steps:,} steps, "
        f"{len(trunk.branches)} branches at steps {steps[0]:,}..{steps[-1]:,}"
    )
    if storage_path is not None:
        from slmscale.grid.trunkrun import saved_branch_steps

        saved = [s for s in saved_branch_steps(storage_path, trunk.key) if s <= trunk.steps]
        if saved:
            line += f"; reused: its state up to step {max(saved):,} (saved by an earlier run)"
    return line


def _source_sizes(spec: GridSpec, data: DataInfo) -> list[tuple[float | None, float]]:
    """(training tokens, test tokens) per source as the store packs them (BOS units EOS), from
    meta.json counts when present, else the declared available_tokens (None: unknown)."""
    sizes = []
    for src, decl in zip(data.sources, spec.units, strict=True):
        if src.digest is None:
            sizes.append((decl.available_tokens, 0.0))
            continue
        train = test = 0.0
        for name, splits in units_io.load_meta(src.path).get("counts", {}).items():
            if src.datasets is not None and name not in src.datasets:
                continue
            for split, c in splits.items():
                n = float(c.get("units", 0)) + 2 * float(c.get("utterances", 0))
                if split == "test":
                    test += n
                else:
                    train += n
        sizes.append((train, test))
    return sizes


def _bytes(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def mixture_lines(spec: GridSpec, data: DataInfo, trials: list[Trial]) -> list[str]:
    """Each source's share of every trial's unique tokens and the token store's disk use."""
    sizes = _source_sizes(spec, data)
    declared = [s.weight for s in spec.units]
    by_size = all(w is None for w in declared)
    kind = (
        "proportional to each source's size (the union of the sources)"
        if by_size
        else "declared weights"
    )
    item = tokenstore.token_dtype(data.n_units).itemsize
    known = all(t is not None for t, _ in sizes)
    if len(sizes) == 1:
        kind = "one source"
    where = tokenstore.default_store_dir([{"path": s.path} for s in data.sources])
    out = [f"mixture: {kind}"]
    if by_size and not known:
        out[0] += "; shares are known once the units are present (or declare available_tokens)"
        weights = None
    else:
        weights = tokenstore.mixture_weights(declared, [t or 0.0 for t, _ in sizes])
    rows = [("source", "training tokens", "share", "on disk")]
    for i, (src, (train, test)) in enumerate(zip(data.sources, sizes, strict=True)):
        rows.append(
            (
                src.path,
                _si(train) if train is not None else "?",
                f"{weights[i]:.1%}" if weights else "?",
                _bytes(item * (train + test)) if train is not None else "?",
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    for r in rows:
        cells = [
            c.ljust(w) if j == 0 else c.rjust(w)
            for j, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        out.append("  " + "  ".join(cells))
    if known:
        total = sum(t + e for t, e in sizes)
        out.append(
            f"token store: {_bytes(item * total)} ({item} bytes/token, one copy for all "
            f"{len(trials)} trials; each reads a prefix of it) in {where}"
        )
        if weights and not by_size and len(sizes) > 1:
            holds = tokenstore.holds_until(weights, [t for t, _ in sizes])
            over = [t for t in trials if t.unique_tokens > holds * (1 + 1e-9)]
            if over:
                out.append(
                    f"note: the declared shares hold up to U_D = {_si(holds)}; {len(over)} trials "
                    "take more, where a source that has run out passes its part to the others"
                )
    return out
