"""`slmscale plan`: compute-budget questions (--flops, --target-loss, --target) from a fit.json.

The unique tokens available (U_D) default to those stored in fit.json (the runs' units
dataset); with a data-constrained fit the allocation minimises Eq. 7/8 and the Eq. 6 answer is
printed beside it.  Every number carries its bootstrap 95% interval; the constants the fit does not
identify are named (its verdicts).  Compute is counted as the fit counted it (`flops_definition`)
unless `--flops-definition` says otherwise.
"""

from __future__ import annotations

import argparse
import json
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
    data = parser.add_mutually_exclusive_group()
    data.add_argument(
        "--unique-tokens",
        type=float,
        metavar="U_D",
        help="unique training tokens available (default: fit.json's, from the units dataset)",
    )
    data.add_argument(
        "--units", metavar="DIR", help="units dataset whose train tokens are the U_D available"
    )
    parser.add_argument(
        "--flops-definition",
        choices=("6nd", "full"),
        help="compute definition of the budget: 6nd (C = 6 N D) or full (attention and output "
        "layer counted); default: the fit's (`slmscale fit --flops`)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the answer as JSON to FILE")
    parser.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="what to print: the answer as text, or as JSON",
    )


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


def _ci(ci, fmt="{:.4g}") -> str:
    if not ci or ci == [None, None]:
        return ""
    lo = "-inf" if ci[0] is None else fmt.format(ci[0])
    hi = "inf" if ci[1] is None else fmt.format(ci[1])
    return f"  95% [{lo}, {hi}]"


def _print(answer: dict) -> None:
    ci = answer.get("ci95") or {}

    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    if "target" in answer:
        print(f"target {answer['target']}: needs loss {fmt(answer['needed_loss'])}")
        print(f"compute needed {answer['flops']:.4g} FLOPs{_ci(answer.get('flops_ci95'))}")
    else:
        print(
            f"compute C      {answer['flops']:.4g} FLOPs ({answer.get('flops_definition', '6nd')})"
        )
    u = answer.get("unique_tokens")
    print(f"law            {answer['law']}" + (f", U_D = {u:.4g} unique tokens" if u else ""))
    print(f"N_opt          {answer['N_opt']:.4g} parameters{_ci(ci.get('N_opt'))}")
    print(f"D_opt          {answer['D_opt']:.4g} tokens{_ci(ci.get('D_opt'))}")
    flat = answer.get("N_within_1e-3")
    if flat:
        print(
            f"               (any N in [{flat[0]:.3g}, {flat[1]:.3g}] is within 0.001 of this loss)"
        )
    if answer.get("epochs") is not None:
        print(f"epochs         {answer['epochs']:.3g}{_ci(ci.get('epochs'), '{:.3g}')}")
    print(f"predicted loss {answer['loss']:.5g}{_ci(ci.get('loss'), '{:.5g}')}")
    eq6 = answer.get("eq6")
    if eq6:
        e = eq6["ci95"]
        print("Eq. 6 (assumes unlimited unique data), for comparison:")
        print(f"  N            {eq6['N_opt']:.4g}{_ci(e.get('N_opt'))}")
        print(
            f"  D            {eq6['D_opt']:.4g} ({eq6['epochs']:.3g} epochs){_ci(e.get('D_opt'))}"
        )
        loss4, loss7 = _ci(e.get("loss_eq4"), "{:.5g}"), _ci(e.get("loss_eq7"), "{:.5g}")
        print(f"  loss, Eq. 4  {eq6['loss_eq4']:.5g}{loss4} (what Eq. 6 promises)")
        print(f"  loss, Eq. 7  {eq6['loss_eq7']:.5g}{loss7} (with U_D: what it gets)")
        print(
            f"  penalty of ignoring the data limit: {answer['penalty']:.3g} in loss"
            f"{_ci(ci.get('penalty'), '{:.3g}')}; Eq. 4 reaches that loss at "
            f"{eq6['eq4_compute_for_that_loss']:.3g} FLOPs"
        )
    for m, v in answer["metrics"].items():
        note = f"  ({v['note']})" if v["note"] else ""
        print(f"{m:14s} {fmt(v['value'])}{_ci(v.get('ci95'))}{note}")
    gh = answer.get("gpu_hours")
    hint = "give --tokens-per-sec, or --mfu and --peak-flops"
    print(f"GPU-hours      {fmt(gh) + _ci(ci.get('gpu_hours')) if gh is not None else hint}")
    for w in answer.get("warnings", []):
        print(f"warning: {w}")


def _units_tokens(path: str) -> float:
    from slmscale.commands.fit import train_units
    from slmscale.units import load_meta, meta_path

    load_meta(path)  # a one-line error when it is not a units dataset
    u = train_units(path)
    if not u:
        raise UserError(f"{meta_path(path)}: no train units counted (counts.<dataset>.train.units)")
    return u


def run(args) -> int:
    from slmscale.laws import plan

    doc = plan.use_definition(load_fit(args.fit), args.flops_definition)
    if (args.mfu is None) != (args.peak_flops is None):
        raise UserError("--mfu and --peak-flops go together")
    throughput = dict(mfu=args.mfu, peak_flops=args.peak_flops, tokens_per_sec=args.tokens_per_sec)
    unique = _units_tokens(args.units) if args.units else args.unique_tokens
    extra = {}
    C = args.flops
    if args.target_loss is not None or args.target:
        if args.target:
            metric, value = _parse_target(args.target)
            loss = plan.loss_for_metric(doc, metric, value)
            extra["target"] = f"{metric}={value:g}"
            what = f"--target {metric}={value:g} (loss {loss:.4g})"
        else:
            loss = args.target_loss
            extra["target"] = f"loss={loss:g}"
            what = None
        extra["needed_loss"] = loss
        C, extra["flops_ci95"] = plan.compute_for_loss(doc, loss, unique_tokens=unique, what=what)
    answer = {**extra, **plan.plan_for_compute(doc, C, unique_tokens=unique, **throughput)}
    if args.json is not None:
        from slmscale.units import write_bytes_atomic

        write_bytes_atomic(
            args.json, (json.dumps(answer, indent=1, sort_keys=True) + "\n").encode()
        )
    if args.format == "json":
        print(json.dumps(answer, indent=1, sort_keys=True))
    else:
        _print(answer)
    return 0
