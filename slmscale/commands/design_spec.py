"""`slmscale design`: the spec's trials, the candidate runs and the finished runs as design points.

The planned trials are the grid's own expansion (`grid.plan.load_plan`), tagged with their block,
budget and epochs rule; candidates (every size x budget x epochs the spec names) are expanded
one at a time, as `slmscale grid` would expand them, so a proposed run keeps its trial key;
`write_spec` writes chosen candidates as a spec and checks it expands to exactly them.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

from slmscale.errors import UserError


def _shape_entry(m) -> str | dict:
    """A ShapeSpec as the YAML writes it: a Table 1 name, or its explicit fields."""
    return m.name if m.layers is None else m.model_dump(exclude_none=True)


def _point(spec, trial, *, group, kind, budget, epochs):
    from slmscale.grid.expand import gpu_hours
    from slmscale.laws.design import Point

    tp = spec.throughput
    cost = gpu_hours(trial, tp.mfu, tp.peak_flops) if tp else trial.flops
    return Point(
        N=float(trial.n_params),
        D=float(trial.tokens),
        U=float(trial.unique_tokens),
        cost=float(cost),
        size=trial.model_size,
        key=trial.key,
        group=group,
        ratio=budget if kind == "d_over_n" else None,
        epochs=epochs,
        seed=int(getattr(trial, "seed", 0) or 0),
    )


def _budgets(block):
    return (
        [("d_over_n", b) for b in block.d_over_n]
        if block.d_over_n
        else [("tokens", b) for b in block.tokens]
    )


def planned_points(plan):
    """The spec's trials as design points (the grid's own expansion, `plan.trials`), each
    tagged with the block it comes from, its D/N as the block states it and its epochs rule:
    rows (Point, model entry, budget kind, budget)."""
    from slmscale.model import budget_reference_params

    blocks = plan.spec.blocks()
    rows = []
    for trial in plan.trials:
        b = getattr(trial, "block", 0)
        block = blocks[b]
        model = next(m for m in block.models if m.shape() == trial.shape)
        kind, budget = _budget_of(block, trial, budget_reference_params(trial.shape))
        epochs = _epochs_of(block, trial)
        group = "main" if b == 0 else f"extra[{b - 1}]"
        point = _point(plan.spec, trial, group=group, kind=kind, budget=budget, epochs=epochs)
        rows.append((point, model, kind, budget))
    return rows


def _budget_of(block, trial, ref_params: float):
    """(kind, value) of the block's budget that gave the trial its tokens."""
    if block.d_over_n:
        r = trial.tokens / ref_params
        return "d_over_n", min(block.d_over_n, key=lambda x: abs(x - r))
    return "tokens", min(block.tokens, key=lambda x: abs(x - trial.tokens))


def _epochs_of(block, trial):
    """The block's epochs rule behind the trial: its number, or "auto"."""
    epochs = trial.tokens / trial.unique_tokens
    for e in block.epochs:
        if e != "auto" and abs(float(e) - epochs) <= 1e-6 * max(1.0, epochs):
            return e
    return "auto" if "auto" in block.epochs else block.epochs[0]


def candidate_points(plan):
    """Every size x budget x epochs combination the spec names, in any of its blocks, each
    expanded as `slmscale grid` would: the first of a key wins, and one the data cannot hold
    (too few tokens for its epochs) is left out."""
    from slmscale.grid.expand import expand_grid

    spec, blocks = plan.spec, plan.spec.blocks()
    models = {m.name: m for b in blocks for m in b.models}
    budgets = sorted({kb for b in blocks for kb in _budgets(b)})
    epochs = []
    for b in blocks:
        epochs += [e for e in b.epochs if e not in epochs]
    out, seen = [], set()
    for model, (kind, budget), e in itertools.product(models.values(), budgets, epochs):
        one = {"models": [model], "d_over_n": None, "tokens": None, "epochs": [e], "extra": []}
        try:
            (trial,) = expand_grid(spec.model_copy(update=one | {kind: [budget]}), plan.data)
        except UserError:
            continue
        if trial.key not in seen:
            seen.add(trial.key)
            point = _point(spec, trial, group="candidate", kind=kind, budget=budget, epochs=e)
            out.append((point, model, kind, budget))
    return out


def finished_points(args, known):
    """Points of the finished runs (`--runs` / `--experiment`), matched to known trials."""
    from slmscale.laws.design import Point
    from slmscale.laws.table import validate_runs

    if args.runs:
        from slmscale.commands.fit import read_table_file

        runs, label = read_table_file(args.runs, "runs table"), args.runs
    elif args.experiment:
        from slmscale.tracking.fits import read_runs
        from slmscale.tracking.store import resolve_tracking_uri

        label = "+".join(args.experiment)
        runs = read_runs(resolve_tracking_uri(args.tracking_uri), args.experiment)
    else:
        return []
    keys = [str(k) if k == k and k else "" for k in runs.get("trial_key") or []]
    table, excluded = validate_runs(runs, label)
    for e in excluded:
        print(f"excluded {e['run_id']}: {e['reason']}", file=sys.stderr)
    by_key = {p.key: p for p in known}
    key_of_run = dict(zip(runs.get("run_id") or [], keys, strict=False)) if keys else {}
    out = []
    for i, rid in enumerate(table.run_id):
        N, D, U = float(table.N[i]), float(table.D[i]), float(table.U[i])
        match = by_key.get(key_of_run.get(rid, ""))
        if match is None:
            match = next(
                (p for p in known if _close(p.N, N) and _close(p.D, D) and _close(p.U, U)), None
            )
        if match is not None:
            out.append(match)
        else:
            size = table.model_size[i] or ""
            out.append(Point(N, D, U, size=size, key=f"run:{rid}", group="finished"))
    return out


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(abs(a), abs(b))


def write_spec(spec_path: str, out_path: str, rows, overrides=()) -> None:
    """The original spec with its grid replaced by exactly `rows` (model, kind, budget, epochs).

    Same name (so the runs land in the same experiment) and same everything else, so each trial
    keeps the key it had as a candidate; checked by expanding the written file before renaming
    it into place.
    """
    import os

    import yaml

    from slmscale.config import read_yaml
    from slmscale.config.base import apply_overrides
    from slmscale.grid.plan import load_plan

    doc = read_yaml(spec_path)
    if overrides:  # the written file holds them: it must expand to the same trials
        doc = apply_overrides(doc, list(overrides), spec_path)
    src_dir, out_dir = Path(spec_path).resolve().parent, Path(out_path).resolve().parent
    for u in doc.get("units") or []:
        p = Path(str(u.get("path", "")))
        if not p.is_absolute() and not p.exists() and (src_dir / p).exists() and src_dir != out_dir:
            u["path"] = str(src_dir / p)  # present data is keyed by content, not by path
    blocks = []
    for point, model, kind, budget in rows:
        blocks.append({"models": [_shape_entry(model)], kind: [budget], "epochs": [point.epochs]})
    for k in ("models", "d_over_n", "tokens", "epochs", "extra"):
        doc.pop(k, None)
    if isinstance(doc.get("batch_size"), dict):  # the spec refuses sizes it does not train
        names = {model.name for _, model, _, _ in rows}
        doc["batch_size"] = {k: v for k, v in doc["batch_size"].items() if k in names}
    doc.update(blocks[0])
    if len(blocks) > 1:
        doc["extra"] = blocks[1:]
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}.yaml")
    head = f"# Next runs proposed by `slmscale design {spec_path}`; otherwise the same spec.\n"
    tmp.write_text(head + yaml.safe_dump(doc, sort_keys=False))
    try:
        got = {t.key for t in load_plan(str(tmp)).trials}
        want = {r[0].key for r in rows}
        if got != want:
            raise UserError(
                f"{out_path}: the written spec would run other trials than proposed "
                "(units paths resolve differently from there?); write it beside the original"
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
