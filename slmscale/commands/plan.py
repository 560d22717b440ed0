"""`slmscale plan`: compute-budget questions answered from a fit.json.

slmscale plan --fit fit.json --flops 1e20 [--mfu 0.4 --peak-flops 989e12 | --tokens-per-sec X]
slmscale plan --fit fit.json --target-loss 2.1
slmscale plan --fit fit.json --target sblimp_acc=0.7
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from slmscale.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fit", required=True, metavar="FILE", help="fit.json from slmscale fit")
    goal = parser.add_mutually_exclusive_group(required=True)
    goal.add_argument("--flops", type=float, help="compute budget C in FLOPs")
    goal.add_argument("--target-loss", type=float, help="test loss to reach")
    goal.add_argument("--target", metavar="METRIC=VALUE", help="e.g. sblimp_acc=0.7")
    parser.add_argument("--mfu", type=float, help="model FLOPs utilisation, with --peak-flops")
    parser.add_argument("--peak-flops", type=float, help="peak FLOP/s of one GPU")
    parser.add_argument("--tokens-per-sec", type=float, help="measured training throughput")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")


def load_fit(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{path}: fit file not found")
    try:
        doc = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(doc, dict) or not {"params", "compute_optimal"} <= set(doc):
        raise UserError(f"{path}: not a fit.json (no params / compute_optimal)")
    return doc


def _parse_target(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        return name.strip(), float(value)
    except ValueError:
        raise UserError(f"--target {text!r}: expected METRIC=VALUE, e.g. sblimp_acc=0.7") from None


def _print(answer: dict, out=None) -> None:
    out = out or sys.stdout

    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    if "target" in answer:
        print(f"target {answer['target']}: needs loss {fmt(answer['needed_loss'])}", file=out)
    ci = answer.get("loss_ci95")
    print(f"compute C      {answer['flops']:.4g} FLOPs", file=out)
    print(f"N_opt          {answer['N_opt']:.4g} parameters", file=out)
    print(f"D_opt          {answer['D_opt']:.4g} tokens", file=out)
    extra = f"  95% [{ci[0]:.4g}, {ci[1]:.4g}] (bootstrap)" if ci else ""
    print(f"predicted loss {answer['loss']:.4g}{extra}", file=out)
    for m, v in answer["metrics"].items():
        note = f"  ({v['note']})" if v["note"] else ""
        print(f"{m:14s} {fmt(v['value'])}{note}", file=out)
    gh = answer.get("gpu_hours")
    hint = "give --tokens-per-sec, or --mfu and --peak-flops"
    print(f"GPU-hours      {fmt(gh) if gh is not None else hint}", file=out)


def run(args) -> int:
    from slmscale.laws import plan

    doc = load_fit(args.fit)
    if (args.mfu is None) != (args.peak_flops is None):
        raise UserError("--mfu and --peak-flops go together")
    throughput = {
        "mfu": args.mfu,
        "peak_flops": args.peak_flops,
        "tokens_per_sec": args.tokens_per_sec,
    }
    extra = {}
    C = args.flops
    if args.target_loss is not None or args.target:
        if args.target:
            metric, value = _parse_target(args.target)
            loss = plan.loss_for_metric(doc, metric, value)
            extra["target"] = f"{metric}={value:g}"
        else:
            loss = args.target_loss
            extra["target"] = f"loss={loss:g}"
        extra["needed_loss"] = loss
        C = plan.compute_for_loss(doc, loss)
    answer = {**extra, **plan.plan_for_compute(doc, C, **throughput)}
    if args.json:
        print(json.dumps(answer, indent=1, sort_keys=True))
    else:
        _print(answer)
    return 0
