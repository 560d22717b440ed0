"""`slmscale eval`: score a trained model on sBLIMP / sWUGGY / StoryCloze / TopicCloze.

The model comes from an MLflow run (its `model` artifact; the metrics and the breakdown JSON are
logged back into that run) or from a Hugging Face directory.  The benchmarks come from repeated
`--benchmark NAME=UNITS_DIR:ROOT[:SPLIT]` flags or from a grid spec's `benchmarks:` list.
The scoring itself is `slmscale.evaluate.score_benchmarks`, the same code every trial runs.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from slmscale import units as units_io
from slmscale.config import BenchmarkSpec
from slmscale.config.base import parse_model
from slmscale.errors import UserError
from slmscale.model import N_SPECIAL_TOKENS
from slmscale.tracking.store import add_tracking_uri_argument

BENCHMARK_FLAG = "NAME=UNITS_DIR:ROOT[:SPLIT]"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--run-id", help="MLflow run whose `model` artifact to score (and log into)")
    src.add_argument("--model", help="a Hugging Face model directory (save_pretrained)")
    add_tracking_uri_argument(parser)
    parser.add_argument(
        "--benchmark",
        action="append",
        default=[],
        metavar=BENCHMARK_FLAG,
        help="a benchmark to score, e.g. sblimp=units/sblimp:data/zr2021:dev (repeatable); "
        "NAME is sblimp, swuggy, topic_cloze or story_cloze",
    )
    parser.add_argument("--spec", help="take the benchmarks from this grid spec's `benchmarks:`")
    parser.add_argument(
        "--score", choices=["sum", "mean"], help="override every benchmark's default score"
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument(
        "--train-units",
        help="the model's training units dataset: its tokenizer must match the benchmark units "
        "(default: the run's units_dataset param; with --model and no flag the check is skipped)",
    )
    parser.add_argument("--batch-tokens", type=int, default=16384, help="tokens per batch")
    parser.add_argument(
        "--json", metavar="FILE", help="also write the full breakdown to this JSON file"
    )


def parse_benchmark_flag(value: str) -> BenchmarkSpec:
    """`sblimp=units/sb:data/zr2021:dev` -> BenchmarkSpec (split defaults to dev)."""
    name, eq, rest = value.partition("=")
    parts = rest.split(":")
    if not eq or len(parts) not in (2, 3) or not all(parts):
        raise UserError(f"--benchmark {value!r}: expected {BENCHMARK_FLAG}")
    fields = {"name": name, "units": parts[0], "root": parts[1]}
    if len(parts) == 3:
        fields["split"] = parts[2]
    return parse_model(BenchmarkSpec, fields, f"--benchmark {value!r}")


def _spec_benchmarks(path: str) -> list[BenchmarkSpec]:
    from slmscale.config import load_grid_spec

    spec = load_grid_spec(path)
    base = Path(path).parent

    def resolve(p: str) -> str:
        return p if Path(p).is_absolute() or Path(p).exists() else str(base / p)

    return [
        b.model_copy(update={"units": resolve(b.units), "root": resolve(b.root)})
        for b in spec.benchmarks
    ]


def benchmarks_from_args(args) -> list[BenchmarkSpec]:
    benches = [parse_benchmark_flag(v) for v in args.benchmark]
    if args.spec:
        benches += _spec_benchmarks(args.spec)
    if not benches:
        raise UserError(f"no benchmark given: use --benchmark {BENCHMARK_FLAG} or --spec SPEC")
    if args.score:
        benches = [b.model_copy(update={"score": args.score}) for b in benches]
    return benches


def precheck(args) -> None:
    """Every named file, folder and run checked before torch, transformers or MLflow load
    (a typo is one line in about a second, not after 5-15 s of imports)."""
    for b in benchmarks_from_args(args):
        units_io.load_meta(b.units)
        if not Path(b.root).exists():
            raise UserError(f"--benchmark {b.name}: {b.root}: no such file or folder")
    if args.train_units:
        units_io.load_meta(args.train_units)
    if args.model and not (Path(args.model) / "config.json").is_file():
        raise UserError(f"{args.model}: not a Hugging Face model directory (no config.json)")
    if args.run_id:
        from slmscale.tracking.store import check_run, reading_tracking_uri

        check_run(reading_tracking_uri(args.tracking_uri), args.run_id)


def _device(flag: str) -> str:
    import torch

    if flag == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if flag.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {flag}: torch sees no CUDA device on this machine")
    return flag


def load_hf_model(path: str | Path, device: str):
    """AutoModelForCausalLM from a save_pretrained directory, in eval mode on `device`."""
    from transformers import AutoModelForCausalLM

    if not (Path(path) / "config.json").is_file():
        raise UserError(f"{path}: not a Hugging Face model directory (no config.json)")
    model = AutoModelForCausalLM.from_pretrained(str(path))
    return model.float().to(device).eval()


def training_fingerprint(units_param: str | None) -> str | None:
    """Tokenizer fingerprint of the units dataset(s) named in a run's units_dataset param.

    The param holds path(s) plus a meta hash; any path that exists locally is read.  None when
    none can be read (the check is then skipped, and the command says so).
    """
    if not units_param:
        return None
    prints = set()
    for part in re.split(r"[,;\s]+", units_param):
        path = Path(re.split(r"[@#]", part)[0])
        if part and units_io.is_units_dataset(path):
            prints.add(units_io.tokenizer_fingerprint(units_io.load_meta(path)))
    if len(prints) > 1:
        raise UserError(f"units_dataset {units_param!r}: datasets with different tokenizers")
    return prints.pop() if prints else None


def _load_from_run(args, device: str, workdir: str):
    """(model, params, tracking_uri) of an MLflow run; the model from its `model` artifact."""
    from slmscale.tracking import client
    from slmscale.tracking.schema import ARTIFACT_MODEL_DIR
    from slmscale.tracking.store import reading_tracking_uri

    uri = reading_tracking_uri(args.tracking_uri)
    try:
        run = client(uri).get_run(args.run_id)
    except Exception as exc:
        raise UserError(f"run {args.run_id}: not found in {uri} ({exc})".splitlines()[0]) from None
    import mlflow.artifacts

    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=args.run_id, artifact_path=ARTIFACT_MODEL_DIR, dst_path=workdir, tracking_uri=uri
        )
    except Exception as exc:
        raise UserError(
            f"run {args.run_id}: no `{ARTIFACT_MODEL_DIR}` artifact to load ({exc})".splitlines()[0]
        ) from None
    return load_hf_model(local, device), dict(run.data.params), uri


def _log_to_run(uri: str, run_id: str, result, params: dict) -> None:
    from slmscale.tracking import client, log_metrics
    from slmscale.tracking.runs import set_rounded_tags
    from slmscale.tracking.schema import ARTIFACT_EVAL_DETAILS

    step = int(float(params.get("tokens", 0) or 0))  # tokens trained: the curves' x axis
    log_metrics(uri, run_id, result.metrics, step=step)
    client(uri).log_dict(run_id, result.details, ARTIFACT_EVAL_DETAILS)
    set_rounded_tags(uri, run_id)  # the rounded copies the grid's view shows


def _refuse_other_tokenizers(benches, train_meta: dict, train_units: str) -> None:
    """Name what differs (weights, precision, k-means, ...) when a benchmark's units were made by
    another tokenizer than the training units (identity by content, never by path)."""
    for b in benches:
        diff = units_io.identity_diff(train_meta, units_io.load_meta(b.units))
        if diff:
            raise UserError(
                f"{b.units}: {b.name} units were made by a different tokenizer than {train_units} "
                f"(differs in {', '.join(diff)}); re-tokenize the benchmark with the same model "
                "weights, layer, precision and k-means"
            )


def run(args) -> int:
    from slmscale.evaluate import check_benchmarks, score_benchmarks
    from slmscale.progress import Progress

    benches = benchmarks_from_args(args)
    device = _device(args.device)
    with tempfile.TemporaryDirectory(prefix="slmscale-eval-") as workdir:
        if args.run_id:
            model, params, uri = _load_from_run(args, device, workdir)
        else:
            model, params, uri = load_hf_model(args.model, device), {}, None
        n_units = int(model.config.vocab_size) - N_SPECIAL_TOKENS
        if args.train_units:
            train_meta = units_io.load_meta(args.train_units)
            _refuse_other_tokenizers(benches, train_meta, args.train_units)
            fingerprint = units_io.tokenizer_fingerprint(train_meta)
        else:
            fingerprint = training_fingerprint(params.get("units_dataset"))
        if fingerprint is None:
            print(
                "slmscale eval: training units unknown (--train-units): tokenizer check skipped",
                file=sys.stderr,
            )
        prepared = check_benchmarks(benches, n_units=n_units, tokenizer_fingerprint=fingerprint)
        total = sum(len(p.units) for p in prepared)
        with Progress(total, "eval", " utterances") as progress:
            result = score_benchmarks(
                model,
                benches,
                n_units=n_units,
                tokenizer_fingerprint=fingerprint,
                device=device,
                max_batch_tokens=args.batch_tokens,
                on_batch=progress.update,
            )
    for line in result.warnings:
        print(f"slmscale eval: warning: {line}", file=sys.stderr)
    print(result.table())
    if args.json:
        units_io.write_json_atomic(args.json, result.details)
    if args.run_id:
        _log_to_run(uri, args.run_id, result, params)
        print(f"logged {len(result.metrics)} metrics and the breakdown to run {args.run_id}")
    return 0
