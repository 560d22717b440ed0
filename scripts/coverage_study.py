"""Coverage of fit.json's 95% intervals and verdicts on the paper's own grid (issue 26).

Simulated studies on exactly the 55 trials of tune_spaces/paper.yaml (the grid's own expansion,
`slmscale.grid.plan.load_plan`): Table 4's speech constants with R*_N 31, R*_D 25; single-epoch
losses from Eq. 4, multi-epoch from Eq. 7/8; log-normal noise (1% by default).  Each study is
written as a runs table and fitted through the CLI's own path (`commands.fit.study_from_args`
on arguments parsed by `slmscale fit`'s parser: `--runs FILE --law data_constrained
--bootstrap B`), so the fitter, its settings and defaults are the CLI's.

Per constant: coverage (truth inside `ci95`), how often the verdict says identified, and how
often such a claim holds (truth inside the interval when identified).  Results as JSON and
markdown (reports/coverage/).

    python scripts/coverage_study.py --studies 200 --bootstrap 200 --jobs 2 --out reports/coverage
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

NAMES = ("E", "A", "B", "alpha", "beta", "R_star_N", "R_star_D", "G", "a", "b")
TRUE_RSTAR = {"R_star_N": 31.0, "R_star_D": 25.0}


def paper_points(spec: str = "tune_spaces/paper.yaml"):
    """(N, D, U_D) of every trial of the spec, from the grid's own expansion."""
    from slmscale.grid.plan import load_plan

    trials = load_plan(spec).trials
    return tuple(
        np.array([getattr(t, k) for t in trials], float)
        for k in ("n_params", "tokens", "unique_tokens")
    )


def truth() -> dict[str, float]:
    from slmscale.laws.simulate import with_exponents
    from slmscale.paper import SPEECH_LAW

    row = [SPEECH_LAW[k] for k in ("E", "A", "B", "alpha", "beta")] + list(TRUE_RSTAR.values())
    return dict(zip(NAMES, with_exponents(np.array([row]))[0].tolist(), strict=True))


def one_study(job) -> dict:
    """Simulate study `seed` and fit it as `slmscale fit --runs ... --law data_constrained`."""
    seed, noise, n_boot, spec = job
    from slmscale.cli import build_parser
    from slmscale.commands.fit import study_from_args
    from slmscale.laws.simulate import true_losses

    N, D, U = paper_points(spec)
    t = truth()
    law = np.array([[t[k] for k in NAMES[:7]]])
    rng = np.random.default_rng(seed)
    L = true_losses(law, N, D, U)[0] * np.exp(rng.normal(0.0, noise, N.size))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "runs.csv"
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["run_id", "params", "tokens", "unique_tokens", "loss"])
            w.writerows(zip([f"r{i:03d}" for i in range(N.size)], N, D, U, L, strict=True))
        args = build_parser().parse_args(
            ["fit", "--runs", str(path), "--law", "data_constrained", "--bootstrap", str(n_boot)]
        )
        with contextlib.redirect_stderr(io.StringIO()):
            doc = study_from_args(args).doc
    out = {"seed": seed}
    for k in NAMES:
        v = doc["verdicts"][k]
        lo, hi = v["interval"]
        out[k] = {
            "estimate": v["estimate"],
            "interval": [lo, hi],
            "covered": bool(lo is not None and lo <= t[k] <= hi),
            "identified": bool(v["identified"]),
            "checks": v["checks"],
        }
    return out


def summarise(rows: list[dict], args) -> dict:
    t = truth()
    per = {}
    for k in NAMES:
        cov = [r[k]["covered"] for r in rows]
        ident = [r[k]["identified"] for r in rows]
        held = [r[k]["covered"] for r in rows if r[k]["identified"]]
        per[k] = {
            "truth": t[k],
            "coverage": float(np.mean(cov)),
            "identified_share": float(np.mean(ident)),
            "claims": len(held),
            "claims_holding": int(sum(held)),
            "claims_hold_share": float(np.mean(held)) if held else None,
            "median_estimate": float(np.median([r[k]["estimate"] for r in rows])),
        }
    claims = sum(p["claims"] for p in per.values())
    hold = sum(p["claims_holding"] for p in per.values())
    return {
        "grid": f"{args.spec}: 55 trials (the grid's own expansion)",
        "truth": "Table 4 speech constants, R*_N 31, R*_D 25",
        "noise": args.noise,
        "studies": len(rows),
        "bootstrap": args.bootstrap,
        "fitter": "slmscale fit --runs FILE --law data_constrained --bootstrap B (its parser "
        "and study_from_args; every other setting the CLI default)",
        "constants": per,
        "all_claims": claims,
        "all_claims_holding": hold,
    }


def markdown(s: dict) -> str:
    lines = [
        f"# Coverage on the paper's grid ({s['studies']} studies, {100 * s['noise']:g}% noise, "
        f"--bootstrap {s['bootstrap']})",
        "",
        f"{s['grid']}; truth: {s['truth']}; fitter: {s['fitter']}.",
        "",
        "| constant | truth | coverage | identified | claims holding | median estimate |",
        "|---|---|---|---|---|---|",
    ]
    for k, p in s["constants"].items():
        held = f"{p['claims_holding']}/{p['claims']}" if p["claims"] else "-"
        lines.append(
            f"| {k} | {p['truth']:.4g} | {p['coverage']:.3f} | {p['identified_share']:.3f} | "
            f"{held} | {p['median_estimate']:.4g} |"
        )
    lines += ["", f"All identified claims: {s['all_claims_holding']}/{s['all_claims']} hold.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=200)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--noise", type=float, default=0.01)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--spec", default="tune_spaces/paper.yaml")
    ap.add_argument("--out", default="reports/coverage")
    args = ap.parse_args(argv)
    jobs = [
        (s, args.noise, args.bootstrap, args.spec)
        for s in range(args.first_seed, args.first_seed + args.studies)
    ]
    t0, rows = time.time(), []
    with ProcessPoolExecutor(args.jobs) as pool:
        for i, r in enumerate(pool.map(one_study, jobs), 1):
            rows.append(r)
            if i % 10 == 0:
                print(
                    f"{i}/{len(jobs)} studies, {time.time() - t0:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    s = summarise(rows, args)
    s["seconds"] = round(time.time() - t0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"paper_grid_noise{args.noise:g}_n{args.studies}"
    (out / f"{stem}.json").write_text(json.dumps({**s, "studies_detail": rows}, indent=1) + "\n")
    (out / f"{stem}.md").write_text(markdown(s))
    print(markdown(s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
