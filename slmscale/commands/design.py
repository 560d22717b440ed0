"""`slmscale design SPEC`: will this grid identify the law?  Simulated studies before training.

Simulates the study the spec describes (slmscale/laws/design.py): per constant the expected 95%
interval and whether it is identified, the error of the extrapolated loss at a target compute
against the grid's GPU-hours, leaner variants of the grid, and the next runs that most narrow the
extrapolation per GPU-hour (from the runs already finished, `--experiment` or `--runs`), written
as a spec that `slmscale grid` runs exactly (`--write-spec`).  See docs/design.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from slmscale.errors import UserError

DEFAULT_SIMS = 200


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="grid spec YAML (tune_spaces/*.yaml)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="override spec fields, right after SPEC, as `slmscale grid` does "
        "(e.g. 'models=[20M,85M,155M]' 'd_over_n=[4,16,64]')",
    )
    parser.add_argument(
        "--prior",
        metavar="FIT_JSON",
        help="fit.json whose constants (and bootstrap samples, as the spread) the simulated "
        "losses are drawn from (default: the paper's Table 4 speech constants)",
    )
    parser.add_argument(
        "--noise",
        type=float,
        help="sigma of log-normal noise on final losses, e.g. 0.01 for 1%% (default: the RMSE "
        "of the prior fit's log residuals, else 0.01)",
    )
    parser.add_argument(
        "--sims", type=int, default=DEFAULT_SIMS, help="simulated studies per grid (default: 200)"
    )
    parser.add_argument("--seed", type=int, default=0, help="simulation seed (default: 0)")
    parser.add_argument(
        "--target-flops",
        type=float,
        help="compute C at which the extrapolated loss is judged (default: 100 x the grid's "
        "largest run, 6 N D)",
    )
    parser.add_argument(
        "--no-variants", action="store_true", help="skip the leaner-grid variants"
    )
    parser.add_argument(
        "--next",
        type=int,
        default=3,
        metavar="K",
        help="propose K next runs (default: 3; 0: none)",
    )
    src = parser.add_mutually_exclusive_group()
    src.add_argument(
        "--experiment",
        action="append",
        metavar="NAME",
        help="MLflow experiment holding the runs finished so far (repeatable)",
    )
    src.add_argument(
        "--runs", metavar="FILE", help="runs finished so far, as a runs table (CSV or Parquet)"
    )
    parser.add_argument("--tracking-uri", help="MLflow tracking URI, with --experiment")
    parser.add_argument(
        "--write-spec",
        metavar="FILE",
        help="write the proposed next runs as a grid spec (same name, so `slmscale grid FILE` "
        "logs them beside the others)",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="processes for the R* refits (default: 2)"
    )
    parser.add_argument("--json", metavar="FILE", help="write the whole design as JSON")


# --- the spec as design points ---------------------------------------------------------------


def _shape_entry(m) -> str | dict:
    """A ShapeSpec as the YAML writes it: a Table 1 name, or its explicit fields."""
    return m.name if m.layers is None else m.model_dump(exclude_none=True)


def _one_trial_spec(spec, model, budget_kind: str, budget: float, epochs):
    return spec.model_copy(
        update={
            "models": [model],
            "d_over_n": [budget] if budget_kind == "d_over_n" else None,
            "tokens": [budget] if budget_kind == "tokens" else None,
            "epochs": [epochs],
            "extra": [],
        }
    )


def _point(spec, trial, *, group, ratio, epochs):
    from slmscale.grid.expand import gpu_hours
    from slmscale.laws.design import Point

    tp = spec.throughput
    cost = gpu_hours(trial, tp.mfu, tp.peak_flops) if tp else trial.flops_with_attention
    return Point(
        N=float(trial.n_params),
        D=float(trial.tokens),
        U=float(trial.unique_tokens),
        cost=float(cost),
        size=trial.model_size,
        key=trial.key,
        group=group,
        ratio=ratio,
        epochs=epochs,
    )


def _expand(spec, data, combos, *, skip_bad: bool):
    """Points for (group, model, budget kind, budget, epochs) combos, first of a key wins."""
    from slmscale.grid.expand import expand_grid

    out, seen = [], set()
    for group, model, kind, budget, epochs in combos:
        try:
            (trial,) = expand_grid(_one_trial_spec(spec, model, kind, budget, epochs), data)
        except UserError:
            if skip_bad:  # a candidate the data cannot hold (too few tokens for its epochs)
                continue
            raise
        if trial.key in seen:
            continue
        seen.add(trial.key)
        ratio = budget if kind == "d_over_n" else None
        out.append((_point(spec, trial, group=group, ratio=ratio, epochs=epochs), model, kind, budget))
    return out


def _budgets(block):
    return [("d_over_n", b) for b in block.d_over_n] if block.d_over_n else [("tokens", b) for b in block.tokens]


def planned_points(plan):
    """The spec's trials as design points, each tagged with the block it comes from."""
    combos = []
    for b, block in enumerate(plan.spec.blocks()):
        group = "main" if b == 0 else f"extra[{b - 1}]"
        for m in block.models:
            for kind, budget in _budgets(block):
                for e in block.epochs:
                    combos.append((group, m, kind, budget, e))
    rows = _expand(plan.spec, plan.data, combos, skip_bad=False)
    keys = {r[0].key for r in rows}
    if keys != {t.key for t in plan.trials}:  # the per-block expansion must be the grid's own
        raise AssertionError("design points differ from the grid's trials")
    return rows


def candidate_points(plan):
    """Every size x budget x epochs combination the spec names, in any of its blocks."""
    blocks = plan.spec.blocks()
    models = {m.name: m for b in blocks for m in b.models}
    budgets = sorted({kb for b in blocks for kb in _budgets(b)})
    epochs = []
    for b in blocks:
        epochs += [e for e in b.epochs if e not in epochs]
    combos = [
        ("candidate", m, kind, budget, e)
        for m in models.values()
        for kind, budget in budgets
        for e in epochs
    ]
    return _expand(plan.spec, plan.data, combos, skip_bad=True)


# --- runs finished so far ----------------------------------------------------------------------


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
    keys = [str(k) if k else "" for k in runs.get("trial_key") or []]
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


# --- writing the proposed runs as a spec --------------------------------------------------------


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


# --- rendering ------------------------------------------------------------------------------------


def _g(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.{digits}g}"


def _pct(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "inf" if v is not None else "-"
    return f"{100 * v:+.1f}%"


def _table(head, rows) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, strict=True)]
    fmt = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return [fmt(head), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


def render(design: dict) -> str:
    full = design["grids"][0]
    unit = design["cost_unit"]
    lines = [
        f"design of grid {design['spec_name']}: {full['n_runs']} runs, {_g(full['cost'], 4)} "
        f"{unit}; prior {design['prior']['source']}; noise {100 * design['prior']['noise']:.2g}%; "
        f"{design['sims']} simulated studies, seed {design['seed']}",
        *(f"  note: {n}" for n in design["prior"]["notes"]),
        "",
    ]
    head = ["constant", "prior", "95% interval of refits", "width", "hi / lo", "on edge", "identified"]
    rows = []
    for k, c in full["constants"].items():
        iv = c["interval"]
        rows.append(
            [
                k,
                _g(c["center"]),
                f"[{_g(iv[0])}, {_g(iv[1])}]" if iv else c.get("reason", "-"),
                _g(c["width"]),
                _g(c["factor"]),
                "-" if c["at_bounds"] is None else f"{100 * c['at_bounds']:.0f}%",
                "yes" if c["identified"] else "NO",
            ]
        )
    lines += _table(head, rows)
    ex = full["extrapolation"]
    iv = ex.get("interval")
    lines += [
        "",
        f"identified: {design['rule']}",
        f"extrapolated compute-optimal loss at C = {ex['target_flops']:.3g} FLOPs: 95% of refits "
        f"within [{_pct(iv and iv[0])}, {_pct(iv and iv[1])}] of the true loss "
        f"(width {_g(100 * ex['width'] if ex['width'] is not None else None)} points, median "
        f"|error| {_pct(ex.get('median_abs'))[1:]}), for {_g(full['cost'], 4)} {unit}",
    ]
    if ex.get("r2_range"):
        lo, hi = ex["r2_range"]
        lines.append(
            f"R^2 of the refits: {lo:.3f}-{hi:.3f} (95% range): high whether or not the "
            "constants are pinned down"
        )
    if full["note"]:
        lines.append(f"note: {full['note']}")
    if len(design["grids"]) > 1:
        lines += [
            "",
            "leaner grids: cost saved vs 95% interval widened (width / the full grid's; for E, A, "
            "B, R* the width of log(hi / lo))",
        ]
        keys = list(full["constants"])
        kept = {k for k, c in full["constants"].items() if c["identified"]}
        head = ["variant", "runs", unit, "saved", *keys, "extrap.", "identified", "keeps full's"]
        rows = []
        for g in design["grids"]:
            ratios = []
            for k in keys:
                w0, w = full["constants"][k]["spread"], g["constants"][k]["spread"]
                ok = w0 and w is not None and math.isfinite(w0)
                ratios.append(f"{w / w0:.2f}x" if ok else "-")
            e0, e = full["extrapolation"]["width"], g["extrapolation"]["width"]
            rows.append(
                [
                    g["name"],
                    str(g["n_runs"]),
                    _g(g["cost"], 4),
                    f"{100 * (1 - g['cost'] / full['cost']):.0f}%" if full["cost"] else "-",
                    *ratios,
                    "-" if not e0 or e is None or not math.isfinite(e0) else f"{e / e0:.2f}x",
                    f"{sum(c['identified'] for c in g['constants'].values())}/{len(keys)}",
                    "yes" if kept <= {k for k, c in g["constants"].items() if c["identified"]} else "no",
                ]
            )
        lines += _table(head, rows)
        cheap, keep = design.get("cheapest_identified"), design.get("cheapest_keeping")
        lines.append(
            f"cheapest grid that identifies every constant: {cheap}"
            if cheap
            else "no grid here identifies every constant (not even the full grid)"
        )
        if keep and not cheap:
            g = next(g for g in design["grids"] if g["name"] == keep)
            lines.append(
                f"cheapest grid that keeps every constant the full grid identifies "
                f"({', '.join(sorted(kept)) or 'none'}): {keep}, {_g(g['cost'], 4)} {unit}"
            )
    nxt = design.get("next_runs")
    if nxt:
        lines += ["", f"next runs ({nxt['basis']}):"]
        if not nxt["chosen"]:
            lines.append(f"  none narrows the extrapolation interval ({nxt.get('why', '')})")
        head = ["#", "run", "trial_key", unit, "extrap. width before -> after", f"gain per {unit}"]
        rows = [
            [
                str(i + 1),
                c["label"],
                c["key"][:16],
                _g(c["cost"], 4),
                f"{100 * c['width_before']:.2f} -> {100 * c['width_after']:.2f} points",
                _g(100 * c["gain_per_cost"]),
            ]
            for i, c in enumerate(nxt["chosen"])
        ]
        if rows:
            lines += ["  " + r for r in _table(head, rows)]
        if nxt.get("spec_written"):
            lines.append(f"  wrote {nxt['spec_written']}: `slmscale grid {nxt['spec_written']}` runs exactly these")
    return "\n".join(lines)


# --- the command ----------------------------------------------------------------------------------


def _prior(args):
    from slmscale.commands.plan import load_fit
    from slmscale.laws import design as ds

    if args.noise is not None and not 0 <= args.noise < 1:
        raise UserError(f"--noise {args.noise}: give a fraction, e.g. 0.01 for 1%")
    if args.prior:
        return ds.prior_from_fit(load_fit(args.prior), args.prior, args.noise)
    return ds.paper_prior(args.noise)


def run(args) -> int:
    from slmscale.grid.plan import load_plan
    from slmscale.laws import design as ds
    from slmscale.laws.study import rounded
    from slmscale.progress import Progress
    from slmscale.units import write_bytes_atomic

    if args.sims < 20:
        raise UserError(f"--sims {args.sims}: at least 20 simulations are needed for a 95% interval")
    if args.next < 0 or args.workers < 1:
        raise UserError("--next must be >= 0 and --workers >= 1")
    if args.write_spec and not args.next:
        raise UserError("--write-spec writes the proposed next runs: give --next K > 0")
    if args.tracking_uri and not args.experiment:
        raise UserError("--tracking-uri goes with --experiment")
    started = time.monotonic()
    prior = _prior(args)
    plan = load_plan(args.spec, args.overrides)
    rows = planned_points(plan)
    points = [r[0] for r in rows]
    target = args.target_flops or 100.0 * max(p.flops for p in points)
    if not target > 0:
        raise UserError(f"--target-flops {args.target_flops}: not a positive compute")
    with_rstar = any(not p.single for p in points)
    grids = [("full grid", points)] if args.no_variants else ds.grid_variants(points, plan.data.available_tokens)

    nxt_setup = _next_setup(args, plan, rows) if args.next else None
    steps = sum(args.sims * (2 if with_rstar else 1) for _ in grids)
    if nxt_setup:
        steps += args.next * sum(c[0].single for c in nxt_setup["pool"]) * args.sims
    progress = Progress(steps, "design", " refits")
    common = dict(n_sims=args.sims, seed=args.seed, target_flops=target)
    try:
        with ds.Workers(args.workers) as workers:
            pending = []
            for name, pts in grids:  # Eq. 4 here while the workers fit R*
                progress.update(0, extra=name)
                pending.append(
                    ds.start_grid(
                        name, pts, prior, with_rstar=with_rstar, workers=workers,
                        progress=progress.update, **common,
                    )
                )
            progress.update(0, extra="R*")
            results = [p.result() for p in pending]
        nxt = None
        if args.next:
            progress.update(0, extra="next runs")
            tick = lambda n: progress.update(args.sims * n)  # noqa: E731
            nxt = _next_runs(args, prior, nxt_setup, common, tick)
    finally:
        progress.close()
    cheapest = min(
        (r for r in results if r.all_identified), key=lambda r: r.cost, default=None
    )
    full_ids = {k for k, c in results[0].constants.items() if c["identified"]}
    keeping = min(
        (r for r in results if full_ids <= {k for k, c in r.constants.items() if c["identified"]}),
        key=lambda r: r.cost,
    )
    design = {
        "spec": str(args.spec),
        "spec_name": plan.spec.name,
        "prior": {
            "source": prior.source,
            "center": prior.center,
            "noise": prior.noise,
            "n_samples": 0 if prior.samples is None else len(prior.samples),
            "notes": prior.notes,
        },
        "sims": args.sims,
        "seed": args.seed,
        "target_flops": target,
        "cost_unit": "GPU-h" if plan.spec.throughput else "FLOPs",
        "rule": ds.RULE,
        "fitter": ds.FITTER,
        "grids": [r.as_dict() for r in results],
        "cheapest_identified": cheapest.name if cheapest else None,
        "cheapest_keeping": keeping.name,
        "next_runs": nxt,
    }
    design = rounded(design)
    if args.json:
        write_bytes_atomic(args.json, (json.dumps(design, indent=1, sort_keys=True) + "\n").encode())
        print(f"wrote {args.json}", file=sys.stderr)
    print(render(design))
    print(f"design took {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


def _next_setup(args, plan, rows) -> dict:
    """The runs to start from and the candidates to choose among.

    From the finished runs when they can be fitted (>= 5 single-epoch runs of >= 2 sizes);
    otherwise from the finished runs plus the whole planned grid, proposing runs beyond it.
    """
    cands = candidate_points(plan)
    points = [r[0] for r in rows]
    finished = finished_points(args, points + [c[0] for c in cands])
    fin_keys = {p.key for p in finished}
    single_fin = [p for p in finished if p.single]
    if len(single_fin) >= 5 and len({p.N for p in single_fin}) >= 2:
        baseline = finished
        basis = f"from the {len(finished)} finished run(s)"
    else:
        baseline = finished + [p for p in points if p.key not in fin_keys]
        basis = (
            f"{len(single_fin)} finished single-epoch run(s), too few to fit: proposing runs "
            "to add to the planned grid"
        )
    base_keys = {p.key for p in baseline}
    pool = [c for c in cands if c[0].key not in base_keys]
    return {"baseline": baseline, "pool": pool, "basis": basis}


def _next_runs(args, prior, setup, common, tick):
    from slmscale.laws import design as ds

    pool = setup["pool"]
    out = ds.propose_next(
        setup["baseline"], [c[0] for c in pool], prior, k=args.next, progress=tick, **common
    )
    by_key = {c[0].key: c for c in pool}
    chosen = []
    for c in out["chosen"]:
        p = c.pop("point")
        chosen.append({**c, "label": p.label(), "key": p.key, "cost": p.cost})
    nxt = {"basis": setup["basis"], **out, "chosen": chosen}
    if not chosen:
        nxt["why"] = (
            "the runs already there hold every single-epoch run the spec's sizes x budgets x "
            "epochs allow; the leaner grids above show which of them carry the information"
            if not any(c[0].single for c in pool)
            else "no candidate's simulated gain is positive"
        )
    if args.write_spec and chosen:
        write_spec(args.spec, args.write_spec, [by_key[c["key"]] for c in chosen], args.overrides)
        nxt["spec_written"] = args.write_spec
    return nxt
