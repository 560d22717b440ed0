"""`slmscale report --compare-schedule EXP`: the same grid under another LR schedule, side by side.

A study trained with cosine runs (the paper's) and the same grid trained as WSD trunks with
cooldown branches (docs/grid.md "Schedules") should give the same science for less compute.
This says whether it did, from the two experiments' runs and fits:
- per grid point (N, D, U_D; seed repeats averaged): the two final test losses and their
  relative difference, median and max, against the run-to-run noise the seed repeats measured
  (fit.json `seed_spread`, `pooled_std_log`);
- the Eq. 4 constants of both studies with their 95% intervals, and whether each lies inside
  the other's interval;
- the training compute each really spent (a WSD branch only its cooldown, plus its trunk:
  `slmscale.branch_step`, trunk runs' `trunk_steps`) and each grid's wall time (its parent
  run's start to end).

Edge module (reads MLflow through slmscale.tracking); the arithmetic is `compare_points` and
`compare_constants`, pure.
"""

from __future__ import annotations

import math

import numpy as np

from slmscale.report.numbers import num, with_interval

CONSTANTS = ("E", "A", "B", "alpha", "beta")


def compare_points(a, b) -> dict:
    """Per-point final losses of two runs tables (laws.table.RunsTable) on the same grid."""
    keys_b = zip(b.N, b.D, b.U, strict=True)
    index_b = {(float(n), float(d), float(u)): i for i, (n, d, u) in enumerate(keys_b)}
    points = []
    for i, key in enumerate(zip(a.N, a.D, a.U, strict=True)):
        j = index_b.get(tuple(float(x) for x in key))
        if j is None:
            continue
        la, lb = float(a.loss[i]), float(b.loss[j])
        points.append(
            {"params": key[0], "tokens": key[1], "unique_tokens": key[2], "a": la, "b": lb,
             "rel_diff": (lb - la) / la}
        )  # fmt: skip
    diffs = np.array([abs(p["rel_diff"]) for p in points])
    signed = np.array([p["rel_diff"] for p in points])
    return {
        "points": points,
        "n": len(points),
        "median_abs_rel_diff": float(np.median(diffs)) if len(diffs) else None,
        "max_abs_rel_diff": float(diffs.max()) if len(diffs) else None,
        "median_rel_diff": float(np.median(signed)) if len(signed) else None,
    }


LOG_SCALE = ("A", "B")  # compared as log: their intervals are wide and skewed
# Median |x| of x ~ N(0, 2 sigma^2): two runs of one point, each with log-loss noise sigma.
NOISE_ONLY_MEDIAN_ABS = 0.6745 * math.sqrt(2)


def compare_constants(doc_a: dict, doc_b: dict) -> dict:
    """Each Eq. 4 constant of both fits; whether each estimate is inside the other's 95%
    interval; and the two-sample z of their difference.

    "Inside the other's interval" is strict: two studies of the same truth, each with its own
    noise, put one estimate outside the other's 95% interval for about 17% of constants (the
    difference of two estimates has sqrt(2) times the spread of one).  The z (difference over
    the combined standard error, each read off its 95% interval as width / 3.92; A, B on log
    scale) is the test of "the same constant": |z| <= 1.96 at 5%.
    """
    out = {}
    for k in CONSTANTS:
        va, vb = doc_a["params"].get(k), doc_b["params"].get(k)
        ca, cb = (doc_a.get("ci95") or {}).get(k), (doc_b.get("ci95") or {}).get(k)
        out[k] = {
            "a": va,
            "b": vb,
            "ci_a": ca,
            "ci_b": cb,
            "a_in_b": _inside(va, cb),
            "b_in_a": _inside(vb, ca),
            "z": difference_z(va, vb, ca, cb, log=k in LOG_SCALE),
        }
    return out


def difference_z(va, vb, ca, cb, log: bool = False) -> float | None:
    """(b - a) / sqrt(se_a^2 + se_b^2), each se = its 95% interval's width / 3.92."""
    values = [va, vb, *(ca or [None, None]), *(cb or [None, None])]
    if any(v is None or not math.isfinite(v) or (log and v <= 0) for v in values):
        return None
    f = math.log if log else float
    se = math.hypot((f(ca[1]) - f(ca[0])) / 3.92, (f(cb[1]) - f(cb[0])) / 3.92)
    return (f(vb) - f(va)) / se if se > 0 else None


def _inside(v, ci) -> bool | None:
    if v is None or not ci or ci[0] is None or ci[1] is None:
        return None
    return bool(ci[0] <= v <= ci[1])


def spent(tracking_uri: str, experiment: str) -> dict:
    """What an experiment's grid cost: training FLOPs (6ND) its runs and trunks really trained,
    and the wall time of its grid parent run(s)."""
    from slmscale.tracking.runs import own_tokens
    from slmscale.tracking.schema import KIND_GRID, KIND_TRAIN, KIND_TRUNK, TAG_KIND
    from slmscale.tracking.store import client

    c = client(tracking_uri)
    exp = c.get_experiment_by_name(experiment)
    flops, wall = 0.0, 0.0
    for r in c.search_runs([exp.experiment_id], max_results=50_000):
        kind = r.data.tags.get(TAG_KIND)
        if kind == KIND_GRID and r.info.end_time:
            wall += (r.info.end_time - r.info.start_time) / 1000.0
        if kind in (KIND_TRAIN, KIND_TRUNK) and r.info.status == "FINISHED":
            flops += 6.0 * float(r.data.params["n_params"]) * own_tokens(r)
    return {"flops": flops, "wall_s": wall}


def schedule_of(tracking_uri: str, experiment: str) -> str:
    """The schedule an experiment's trials trained with (their `slmscale.schedule` tag)."""
    from slmscale.tracking.schema import KIND_TRAIN, TAG_KIND, TAG_SCHEDULE
    from slmscale.tracking.store import client

    c = client(tracking_uri)
    exp = c.get_experiment_by_name(experiment)
    runs = c.search_runs(
        [exp.experiment_id], filter_string=f"tags.`{TAG_KIND}` = '{KIND_TRAIN}'", max_results=1
    )
    return (runs[0].data.tags.get(TAG_SCHEDULE) or "cosine") if runs else "cosine"


def fit_other(args, experiment: str):
    """The other schedule's study, fitted exactly as the main one (same flags, its runs)."""
    import argparse
    import sys

    from slmscale.commands.fit import study_from_args

    print(f"report: fitting {experiment} (the other schedule)", file=sys.stderr)
    return study_from_args(argparse.Namespace(**{**vars(args), "experiment": [experiment]}))


def comparison(study_a, study_b, tracking_uri: str, exp_a: str, exp_b: str) -> dict:
    """The whole comparison (schedules.json): points, constants, noise, compute, verdicts."""
    points = compare_points(study_a.table, study_b.table)
    constants = compare_constants(study_a.doc, study_b.doc)
    noise = [
        (d.get("seed_spread") or {}).get("metrics", {}).get("loss", {}).get("pooled_std_log")
        for d in (study_a.doc, study_b.doc)
    ]
    noise = [x for x in noise if x is not None and math.isfinite(x)]
    seed_noise = float(np.mean(noise)) if noise else None
    cost = {exp_a: spent(tracking_uri, exp_a), exp_b: spent(tracking_uri, exp_b)}
    ratio = cost[exp_b]["flops"] / cost[exp_a]["flops"] if cost[exp_a]["flops"] else None
    median = points["median_rel_diff"]
    return {
        "experiments": {
            exp_a: schedule_of(tracking_uri, exp_a),
            exp_b: schedule_of(tracking_uri, exp_b),
        },
        "points": points,
        "seed_noise_rel": seed_noise,
        # the systematic offset (median signed difference) against one run's noise
        "median_within_noise": (abs(median) <= seed_noise)
        if median is not None and seed_noise
        else None,
        # what the median |difference| would be were the schedules equal and runs only noisy
        "noise_only_median_abs": NOISE_ONLY_MEDIAN_ABS * seed_noise if seed_noise else None,
        "constants": constants,
        "constants_agree": all(
            c["a_in_b"] is not False and c["b_in_a"] is not False for c in constants.values()
        ),
        "constants_consistent": all(
            c["z"] is None or abs(c["z"]) <= 1.96 for c in constants.values()
        ),
        "cost": cost,
        "flops_ratio": ratio,
    }


def figure(doc: dict):
    """Each point's final loss under the other schedule against this one's, with y = x."""
    from matplotlib import colormaps

    from slmscale.report import style

    pts = doc["points"]["points"]
    if not pts:
        return None
    (a, b) = doc["experiments"]
    fig, (ax,) = style.panels(1)
    sizes = sorted({p["params"] for p in pts})
    colors = colormaps["viridis"](np.linspace(0, 0.9, len(sizes)))
    for color, n in zip(colors, sizes, strict=True):
        mine = [p for p in pts if p["params"] == n]
        ax.scatter([p["a"] for p in mine], [p["b"] for p in mine], s=14, color=color,
                   label=f"N = {num(n, 3)}")  # fmt: skip
    lo = min(min(p["a"], p["b"]) for p in pts)
    hi = max(max(p["a"], p["b"]) for p in pts)
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, label="equal")
    ax.set_xlabel(f"final test loss, {a} ({doc['experiments'][a]})")
    ax.set_ylabel(f"final test loss, {b} ({doc['experiments'][b]})")
    style.legend_beside(ax)
    return fig


def blocks(doc: dict, figures: list[str]) -> list:
    """The report's section on the schedule comparison."""
    (a, b) = doc["experiments"]
    sa, sb = doc["experiments"][a], doc["experiments"][b]
    p, cost = doc["points"], doc["cost"]
    noise = doc["seed_noise_rel"]
    lines = [
        f"The same grid trained twice: {a} ({sa}) and {b} ({sb}); {p['n']} grid points in both "
        f"(seed repeats averaged). Final test loss of {b} against {a}: median relative difference "
        f"{p['median_rel_diff']:+.2%}, median |difference| {p['median_abs_rel_diff']:.2%}, "
        f"max {p['max_abs_rel_diff']:.2%}"
        + (
            f"; run-to-run noise measured from seed repeats: {noise:.2%} (std of log loss), "
            f"so the median difference is {'within' if doc['median_within_noise'] else 'beyond'} "
            f"the seed noise; were the schedules equal, noise alone would make the median "
            f"|difference| {doc['noise_only_median_abs']:.2%} (two runs of a point)."
            if noise
            else "; no seed repeats in either study, so no measured noise to compare with."
        ),
        f"Training compute really spent: {a} {num(cost[a]['flops'], 3)} FLOPs in "
        f"{cost[a]['wall_s'] / 60:.1f} min, {b} {num(cost[b]['flops'], 3)} FLOPs in "
        f"{cost[b]['wall_s'] / 60:.1f} min: {b} used {doc['flops_ratio']:.0%} of {a}'s FLOPs "
        "(WSD counts each trunk once and each budget's cooldown; wall time is each grid's "
        "parent run, start to end).",
    ]
    head = ["constant", a, b, f"{a} in {b}'s 95%", f"{b} in {a}'s 95%", "difference z"]
    rows, yes = [], {True: "yes", False: "NO", None: "-"}
    for k, c in doc["constants"].items():
        rows.append(
            [k, with_interval(c["a"], c["ci_a"], None, 3), with_interval(c["b"], c["ci_b"], None, 3),
             yes[c["a_in_b"]], yes[c["b_in_a"]],
             "-" if c.get("z") is None else f"{c['z']:+.1f}"]
        )  # fmt: skip
    out = [
        ("h2", f"Schedules: {sa} against {sb}"),
        *[("p", line) for line in lines],
        ("table", head, rows),
        ("p", ("Every Eq. 4 constant of each study lies inside the other's 95% interval."
         if doc["constants_agree"] else "Some constant of one study lies outside the other's "
         "95% interval (NO above).") + " " + _consistency(doc)),
        ("fig", "fig_schedules", f"Final test loss per grid point, {b} against {a}"),
    ]  # fmt: skip
    return [x for x in out if x[0] != "fig" or x[1] in figures]


def _consistency(doc: dict) -> str:
    zs = {k: c["z"] for k, c in doc["constants"].items() if c.get("z") is not None}
    if not zs:
        return ""
    far = [k for k, z in zs.items() if abs(z) > 1.96]
    worst = max(zs, key=lambda k: abs(zs[k]))
    return (
        "Difference z (each difference over the two intervals' combined standard error; two "
        "studies of the same truth put an estimate outside the other's interval for ~17% of "
        "constants): "
        + (
            f"{', '.join(far)} {'differs' if len(far) == 1 else 'differ'} beyond 1.96 (largest |z| {abs(zs[worst]):.1f}, {worst})."
            if far
            else f"every |z| <= 1.96 (largest {abs(zs[worst]):.1f}, {worst}): consistent at 5%."
        )
    )
