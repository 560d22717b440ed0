"""`slmscale fit`: fit the scaling laws to tracked runs (`--experiment`) or a runs table (`--runs`).

Writes fit.json (`--json FILE`, else prints a summary); with `--experiment` also logs a fit run
to MLflow.  The shared input flags and loading live here; `report` reuses them.  A missing file
or an unknown experiment is reported before the heavy imports (numpy's are cheap, mlflow's and
the fitter's are not): one line in well under 2 s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from contextlib import nullcontext
from pathlib import Path

from slmscale.commands.fit_summary import print_summary, verdict_line  # noqa: F401 (report)
from slmscale.errors import UserError
from slmscale.paper import HUBER_DELTA
from slmscale.tracking.store import add_tracking_uri_argument

LAWS = ("chinchilla", "data_constrained")
FLOPS = ("6nd", "full")  # laws.flops.FLOPS_DEFINITIONS, spelled here to keep --help import-free
MIN_MULTI = 3  # multi-epoch runs needed for Eq. 7/8 (R*_N, R*_D)


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
    add_tracking_uri_argument(parser)
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
        choices=(*LAWS, "auto"),
        default="auto",
        help="chinchilla: Eq. 4 on single-epoch runs; data_constrained: then Eq. 7/8's R*_N, "
        f"R*_D on the multi-epoch runs; auto (default): data_constrained when >= {MIN_MULTI} "
        "multi-epoch runs exist, else chinchilla (said so)",
    )
    parser.add_argument(
        "--flops",
        choices=FLOPS,
        default="6nd",
        help="compute definition for the envelope (Figure 1), Eq. 6 and downstream envelopes: "
        "6nd (C = 6 N D, the paper's; default) or full (adds attention over the context and "
        "the output layer; needs each run's flops_full)",
    )
    parser.add_argument(
        "--keep-outliers",
        action="store_true",
        help="keep runs the outlier rule flags (a loss > 5 robust sds off the fitted law); they "
        "are still listed in fit.json",
    )
    parser.add_argument(
        "--items",
        type=int,
        metavar="N",
        help="items per benchmark for the chance test, where the runs do not log it "
        "(<metric>_n_items); without either the chance test falls back to a 0.02 margin",
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
    from slmscale.tracking.fits import check_experiments, read_curves, read_runs
    from slmscale.tracking.store import reading_tracking_uri

    uri = reading_tracking_uri(args.tracking_uri)
    args.tracking_uri = uri
    check_experiments(uri, args.experiment)  # before mlflow is imported: one line, fast
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


def choose_law(requested: str, table) -> tuple[str, str]:
    """(law, why): `auto` is data_constrained when the runs hold enough multi-epoch runs."""
    import numpy as np

    n_multi = int(np.count_nonzero(~table.single_epoch))
    if requested != "auto":
        return requested, f"{requested} (--law)"
    if n_multi >= MIN_MULTI:
        why = f"data_constrained: {n_multi} multi-epoch runs (--law chinchilla for Eq. 4 alone)"
        return "data_constrained", why
    return "chinchilla", f"chinchilla: {n_multi} multi-epoch run(s), fewer than {MIN_MULTI}"


def precheck(args) -> None:
    """The cheap checks, before anything heavy is imported (files exist, numbers make sense)."""
    if args.bootstrap < 0 or args.huber_delta <= 0:
        raise UserError("--bootstrap must be >= 0 and --huber-delta > 0")
    if args.unique_tokens is not None and not args.unique_tokens > 0:
        raise UserError(f"--unique-tokens {args.unique_tokens:g}: must be a positive count")
    if args.items is not None and args.items < 1:
        raise UserError(f"--items {args.items}: must be a positive count")
    for path, what in (
        (args.runs, "runs table"),
        (args.curves, "curves"),
        (args.reference, "reference table"),
    ):
        if path and not Path(path).is_file():
            raise UserError(f"{path}: {what} file not found")


def study_from_args(args):
    """Load, validate and fit: the `Study` for `fit` and `report`."""
    precheck(args)
    runs, curves, source = load_inputs(args)
    from slmscale.laws.reference import load_reference
    from slmscale.laws.study import run_study
    from slmscale.laws.table import validate_runs
    from slmscale.progress import Progress

    table, excluded = validate_runs(runs, source["label"])
    law, why = choose_law(args.law, table)
    print(f"law {why}", file=sys.stderr)
    ref_label, reference = load_reference(args.reference)
    stages = 3 if law == "data_constrained" else 2
    unique = args.unique_tokens or unique_tokens_of(runs)
    with (
        Progress(args.bootstrap * stages, "bootstrap over runs, then simulated studies", " refits")
        if args.bootstrap
        else nullcontext()
    ) as progress:
        study = run_study(
            table,
            excluded,
            source=source,
            law=law,
            huber_delta=args.huber_delta,
            n_bootstrap=args.bootstrap,
            seed=args.seed,
            curves=curves,
            reference=reference,
            reference_label=ref_label,
            progress=progress,
            unique_tokens_available=unique,
            keep_outliers=args.keep_outliers,
            flops=args.flops,
            n_items=args.items,
        )
    study.doc["law_choice"] = why
    return study


def fit_json_bytes(doc: dict) -> bytes:
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def run(args) -> int:
    study = study_from_args(args)
    from slmscale.units import write_bytes_atomic

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
