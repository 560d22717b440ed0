"""`slmscale fit`: fit the scaling laws to tracked runs (`--experiment`) or a runs table (`--runs`).

Writes fit.json (`--json FILE`, else prints a summary); with `--experiment` also logs a fit run
to MLflow.  The shared input flags and loading live here; `report` reuses them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from slmscale.errors import UserError
from slmscale.paper import HUBER_DELTA

LAWS = ("chinchilla", "data_constrained")


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--experiment",
        action="append",
        metavar="NAME",
        help="MLflow experiment to read train runs from (repeatable)",
    )
    src.add_argument(
        "--runs",
        metavar="FILE",
        help="runs table, CSV or Parquet: params, tokens, loss [, unique_tokens, "
        "flops, run_id, model_size, tokenizer, metric columns]",
    )
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the nearest mlflow.db in "
        "this folder or its parents, else slmscale-demo/mlflow.db)",
    )
    parser.add_argument(
        "--filter",
        default="",
        help="MLflow search filter, e.g. \"params.tokenizer = 'hubert25hz-k500'\"",
    )
    parser.add_argument(
        "--curves",
        metavar="FILE",
        help="with --runs: eval-point curves, "
        "long format CSV/Parquet: run_id, tokens, flops, test_loss",
    )
    parser.add_argument(
        "--law",
        choices=LAWS,
        default="chinchilla",
        help="chinchilla: Eq. 4 on single-epoch runs; data_constrained: then Eq. 7/8's R*_N, "
        "R*_D on the multi-epoch runs (default: chinchilla)",
    )
    parser.add_argument(
        "--huber-delta",
        type=float,
        default=HUBER_DELTA,
        help=f"Huber loss delta on log-loss residuals (default: {HUBER_DELTA}, the paper's)",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="bootstrap replicates over runs for 95%% intervals (0: none)",
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help=argparse.SUPPRESS,  # accepted for old scripts: the refits are vectorised now
    )
    parser.add_argument(
        "--text-reference",
        "--reference",
        dest="reference",
        metavar="FILE",
        help="text-LLM table for Table 3 (columns params_nonembedding, tokens_seen, model, "
        "blimp_acc, ...; default: the vendored Pythia v0 table, see slmscale/data/REFERENCE.md)",
    )
    parser.add_argument(
        "--unique-tokens",
        type=float,
        metavar="U_D",
        help="unique training tokens available (stored in fit.json for `slmscale plan`; "
        "default: the train units of the runs' units dataset when its meta.json is readable)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser)
    parser.add_argument("--json", metavar="FILE", help="write fit.json here")


def read_table_file(path: str, what: str) -> dict[str, list]:
    """A CSV or Parquet file as column -> list, with a one-line error for unreadable files."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{path}: {what} file not found")
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            table = pq.read_table(p)
        else:
            table = pcsv.read_csv(p)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"{path}: cannot read {what} ({str(exc).splitlines()[0]})") from None
    if table.num_rows == 0:
        raise UserError(f"{path}: {what} has no rows")
    return table.to_pydict()


def _check_curves(curves: dict, path: str) -> dict:
    from slmscale.tracking.schema import M_TEST_LOSS

    need = {"run_id", M_TEST_LOSS}
    if not need <= set(curves) or not ({"flops", "tokens"} & set(curves)):
        raise UserError(
            f"{path}: curves need columns run_id, {M_TEST_LOSS} and flops or tokens "
            f"(has: {', '.join(sorted(curves))})"
        )
    return curves


def load_inputs(args) -> tuple[dict, dict | None, dict]:
    """(runs columns, curves columns or None, source) from `--runs` or `--experiment`."""
    if args.runs:
        if args.filter:
            raise UserError("--filter applies to --experiment only (filter the file instead)")
        runs = read_table_file(args.runs, "runs table")
        curves = (
            _check_curves(read_table_file(args.curves, "curves"), args.curves)
            if args.curves
            else None
        )
        digest = hashlib.sha256(Path(args.runs).read_bytes()).hexdigest()[:16]
        source = {"kind": "file", "path": str(args.runs), "sha256": digest, "label": args.runs}
        return runs, curves, source
    if args.curves:
        raise UserError("--curves applies to --runs only (curves are read from MLflow)")
    from slmscale.tracking.fits import read_curves, read_runs
    from slmscale.tracking.store import reading_tracking_uri

    uri = reading_tracking_uri(args.tracking_uri)
    args.tracking_uri = uri
    runs = read_runs(uri, args.experiment, args.filter)
    if not runs or not runs.get("run_id"):
        raise UserError(
            f"experiment(s) {', '.join(args.experiment)} in {uri}: no train runs "
            f"match{' filter ' + repr(args.filter) if args.filter else ''}"
        )
    curves = read_curves(uri, runs)
    source = {
        "kind": "mlflow",
        "tracking_uri": uri,
        "experiments": list(args.experiment),
        "filter": args.filter,
        "label": "+".join(args.experiment),
    }
    return runs, curves, source


def train_units(root: str | Path) -> float | None:
    """Training units (every split but held-out ones) counted in a units dataset's meta."""
    from slmscale.units import is_training_split, load_meta

    try:
        counts = load_meta(root).get("counts") or {}
        total = sum(
            float((c or {}).get("units", 0))
            for per in counts.values()
            for split, c in per.items()
            if is_training_split(split)
        )
    except (UserError, AttributeError, TypeError, ValueError):
        return None
    return total or None


def unique_tokens_of(runs: dict) -> float | None:
    """Unique training tokens available: the train units of the runs' units dataset(s).

    The `units_dataset` param is "path@meta_hash", ";"-joined for a mixture (whose sources
    add up).  None when the runs name no dataset, name several different ones, or a
    meta.json is not readable here.
    """
    import re

    values = {str(v) for v in runs.get("units_dataset", []) if v and v == v}
    if len(values) != 1:
        return None
    total = 0.0
    for part in values.pop().split(";"):
        path = Path(re.split(r"[@#]", part.strip())[0])
        u = train_units(path) if part.strip() else None
        if u is None:
            return None
        total += u
    return total or None


def study_from_args(args):
    """Load, validate and fit: the `Study` for `fit` and `report`."""
    from slmscale.laws.reference import load_reference
    from slmscale.laws.study import run_study
    from slmscale.laws.table import validate_runs
    from slmscale.progress import Progress

    if args.bootstrap < 0 or args.huber_delta <= 0:
        raise UserError("--bootstrap must be >= 0 and --huber-delta > 0")
    runs, curves, source = load_inputs(args)
    table, excluded = validate_runs(runs, source["label"])
    for e in excluded:
        print(f"excluded {e['run_id']}: {e['reason']}", file=sys.stderr)
    ref_label, reference = load_reference(args.reference)
    stages = 2 if args.law == "data_constrained" else 1
    progress = (
        Progress(
            args.bootstrap * stages,
            "bootstrap (Eq. 4, then R*)" if stages == 2 else "bootstrap (Eq. 4)",
            " refits",
        )
        if args.bootstrap
        else None
    )
    if args.unique_tokens is not None and not args.unique_tokens > 0:
        raise UserError(f"--unique-tokens {args.unique_tokens:g}: must be a positive count")
    unique = args.unique_tokens or unique_tokens_of(runs)
    try:
        return run_study(
            table,
            excluded,
            source=source,
            law=args.law,
            huber_delta=args.huber_delta,
            n_bootstrap=args.bootstrap,
            seed=args.seed,
            curves=curves,
            reference=reference,
            reference_label=ref_label,
            progress=progress,
            unique_tokens_available=unique,
        )
    finally:
        progress and progress.close()


def fit_json_bytes(doc: dict) -> bytes:
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def print_summary(doc: dict, out=None) -> None:
    out = out or sys.stdout
    ci = doc["ci95"]
    print(f"law {doc['law']}: {doc['n_points']} points, objective {doc['objective']:.6g}", file=out)
    flagged = set(doc.get("not_identified", []))

    def row(k, v):
        lo, hi = ci.get(k) or [None, None]
        rng = f"  95% [{_num(lo)}, {_num(hi)}]" if lo is not None or hi is not None else ""
        mark = "  NOT IDENTIFIED" if k in flagged else ""
        print(f"  {k:9s} {v:<12.6g}{rng}{mark}", file=out)

    for k, v in doc["params"].items():
        row(k, v)
    co = doc["compute_optimal"]
    for k in ("G", "a", "b"):
        row(k, co[k])
    print(f"  N_opt = {co['G']:.4g} (C/6)^{co['a']:.4f}, D_opt = (C/6)^{co['b']:.4f} / G", file=out)
    if flagged:
        print(
            f"  not identified ({doc.get('identification_rule')}): {', '.join(sorted(flagged))}",
            file=out,
        )
    print(f"  excluded runs: {len(doc['excluded'])}", file=out)


def _num(v) -> str:
    return "-" if v is None else f"{v:.4g}"


def run(args) -> int:
    from slmscale.units import write_bytes_atomic

    study = study_from_args(args)
    data = fit_json_bytes(study.doc)
    if args.json:
        write_bytes_atomic(args.json, data)
        print(f"wrote {args.json}", file=sys.stderr)
    print_summary(study.doc)
    if args.experiment:
        from slmscale.tracking.fits import log_fit_run

        run_id = log_fit_run(
            args.tracking_uri, args.experiment, args.filter, study.doc, fit_json=data
        )
        print(f"logged fit run {run_id}", file=sys.stderr)
    return 0
