"""`slmscale design SPEC`: will this grid identify the law?  Simulated studies before training.

Simulates the study the spec describes (slmscale/laws/design.py): per constant the expected 95%
interval and whether it is identified, the error of the extrapolated loss at a target compute
against the grid's GPU-hours, leaner variants of the grid, and the next runs that most narrow the
extrapolation per GPU-hour (from the runs already finished, `--experiment` or `--runs`), written
as a spec that `slmscale grid` runs exactly (`--write-spec`).  See docs/design.md.  The spec's
points are in `design_spec.py`, the text in `design_render.py`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from slmscale.errors import UserError
from slmscale.tracking.store import add_tracking_uri_argument

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
        help="sigma of log-normal noise on final losses, e.g. 0.01 for 1%% (default: the prior "
        "fit's measured seed spread, else its residuals' sigma, else 0.01)",
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
    parser.add_argument("--no-variants", action="store_true", help="skip the leaner-grid variants")
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
    add_tracking_uri_argument(parser)  # read with --experiment
    parser.add_argument(
        "--write-spec",
        metavar="FILE",
        help="write the proposed next runs as a grid spec (same name, so `slmscale grid FILE` "
        "logs them beside the others)",
    )
    parser.add_argument("--json", metavar="FILE", help="write the whole design as JSON")


def _prior(args):
    from slmscale.commands.plan import load_fit
    from slmscale.laws import design as ds

    if args.noise is not None and not 0 <= args.noise < 1:
        raise UserError(f"--noise {args.noise}: give a fraction, e.g. 0.01 for 1%")
    if args.prior:
        return ds.prior_from_fit(load_fit(args.prior), args.prior, args.noise)
    return ds.paper_prior(args.noise)


def run(args) -> int:
    if args.prior and not Path(args.prior).is_file():
        raise UserError(f"{args.prior}: fit file not found")
    if args.runs and not Path(args.runs).is_file():
        raise UserError(f"{args.runs}: runs table file not found")
    from slmscale.commands.design_render import render
    from slmscale.commands.design_spec import planned_points
    from slmscale.commands.fit import fit_json_bytes
    from slmscale.grid.plan import load_plan
    from slmscale.laws import design as ds
    from slmscale.laws import design_search
    from slmscale.laws.study import rounded
    from slmscale.progress import Progress
    from slmscale.units import write_bytes_atomic

    if args.sims < 20:
        raise UserError(
            f"--sims {args.sims}: at least 20 simulations are needed for a 95% interval"
        )
    if args.next < 0:
        raise UserError("--next must be >= 0")
    if args.write_spec and not args.next:
        raise UserError("--write-spec writes the proposed next runs: give --next K > 0")
    if args.tracking_uri and not args.experiment:
        raise UserError("--tracking-uri goes with --experiment")
    if not Path(args.spec).is_file():
        raise UserError(f"{args.spec}: spec file not found")
    if args.experiment:  # a typo in the name is told now, not after the simulations
        from slmscale.tracking.fits import check_experiments
        from slmscale.tracking.store import reading_tracking_uri

        args.tracking_uri = reading_tracking_uri(args.tracking_uri)
        check_experiments(args.tracking_uri, args.experiment)
    started = time.monotonic()
    prior = _prior(args)
    plan = load_plan(args.spec, args.overrides)
    rows = planned_points(plan)
    points = [r[0] for r in rows]
    target = args.target_flops or 100.0 * max(p.flops for p in points)
    if not target > 0:
        raise UserError(f"--target-flops {args.target_flops}: not a positive compute")
    with_rstar = any(not p.single for p in points)
    grids = (
        [("full grid", points)]
        if args.no_variants
        else design_search.grid_variants(points, plan.data.available_tokens)
    )

    nxt_setup = _next_setup(args, plan, rows) if args.next else None
    steps = args.sims * len(grids)
    if nxt_setup:
        steps += args.next * sum(c[0].single for c in nxt_setup["pool"]) * args.sims
    common = dict(n_sims=args.sims, seed=args.seed, target_flops=target)
    with Progress(steps, "design", " refits") as progress:
        results = []
        for name, pts in grids:
            progress.update(0, extra=name)
            kw = dict(with_rstar=with_rstar, progress=progress.update, **common)
            results.append(ds.evaluate_grid(name, pts, prior, **kw))
        nxt = None
        if args.next:
            progress.update(0, extra="next runs")
            tick = lambda n: progress.update(args.sims * n)  # noqa: E731
            nxt = _next_runs(args, prior, nxt_setup, common, tick)
    cheapest = min((r for r in results if r.all_identified), key=lambda r: r.cost, default=None)
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
            "noise_source": prior.noise_source,
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
        "schedules": _schedule_prices(plan),
    }
    design = rounded(design)
    if args.json:
        write_bytes_atomic(args.json, fit_json_bytes(design))
        print(f"wrote {args.json}", file=sys.stderr)
    print(render(design))
    print(f"design took {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


def _schedule_prices(plan) -> dict:
    """The full grid priced as cosine runs (the paper's) and as WSD trunks with cooldowns
    (slmscale.grid.trunks): the simulated studies hold for either, as long as a WSD branch ends
    at the loss a cosine run of its budget would (docs/grid.md; the demo measures how close)."""
    from slmscale.grid.trunks import schedule_cost

    cost = schedule_cost(plan.trials, plan.data.available_tokens)
    tp = plan.spec.throughput
    cos_h, wsd_h = cost.gpu_hours(tp.mfu, tp.peak_flops) if tp else (None, None)
    s = plan.spec.schedule
    return {
        "spec_schedule": s.kind,
        "cooldown": f"{s.cooldown_fraction:.0%} {s.cooldown_shape}",
        "trunks": cost.trunks,
        "cosine_flops": cost.cosine,
        "wsd_flops": cost.wsd,
        "cosine_gpu_hours": cos_h,
        "wsd_gpu_hours": wsd_h,
        "wsd_saves": cost.saved,
    }


def _next_setup(args, plan, rows) -> dict:
    """The runs to start from and the candidates to choose among.

    From the finished runs when they can be fitted (>= 5 single-epoch runs of >= 2 sizes);
    otherwise from the finished runs plus the whole planned grid, proposing runs beyond it.
    """
    from slmscale.commands.design_spec import candidate_points, finished_points

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
    from slmscale.commands.design_spec import write_spec
    from slmscale.laws.design_search import propose_next

    pool = setup["pool"]
    out = propose_next(
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
