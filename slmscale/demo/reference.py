"""The committed demo report's reference trials: recorded beside it, checked against the code.

Why: a committed example the code no longer produces misleads every reader who compares against
it (issue 27: reports/demo said 1.515 where the code gives 1.4736).  `write` records, next to
the report, a few small trials of the main grid with the final test loss the report used, and
what made them: the units' content digest, the k-means file's SHA-256, the trial keys and the
machine.  `check` makes the demo's data again in a working folder with the current code (world,
k-means, tokenize), trains those trials, and fails naming every number that moved, and, when
the units differ, that the data (not the training) is what changed.

What moved them before, measured (2026-12-06): training is deterministic and insensitive to the
CPU's instruction set (losses equal to 1e-6 with MKL held to AVX2); the world's audio is
bit-identical; but in float32 the log-mel features, hence the k-means centroids, depended on the
code path torch's math library (MKL) takes on the CPU (AVX-512, AVX2 and SSE4.2 gave three
centroid files), so a few utterances got other units, every trial key changed (it names the
k-means content) and losses moved where those utterances fell.  The report of 2026-11-30 was
made on an AMD EPYC VM and checked on an Intel Xeon.  Since then the log-mel features and the CPU
assignment are computed in float64 (slmscale.audio.encoders.LogMelEncoder): one centroid file and
the same units on all three paths.  The file still records the machine and the k-means hash, so
that whatever else moves a number is named.

    python -m slmscale.demo.reference write --workdir DEMO_WORKDIR --report-dir reports/demo
    python -m slmscale.demo.reference check [--workdir DIR] [--reference FILE]   # exit 1: moved
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import replace
from pathlib import Path

from slmscale.errors import UserError

REFERENCE_FILE = "reference_trials.json"
# Single-epoch trials of tune_spaces/demo.yaml, seconds each on one core, over three budgets:
# a unit that differs deep in the data shows in the larger prefixes first.  None of them is a
# seed-repeated point (the report's fit uses those points' mean over their seeds).
POINTS = (("demo-1k", 50_000), ("demo-2k", 70_000), ("demo-3k", 200_000))
RTOL = 1e-4  # tighter than the report prints (4 digits), far above run-to-run noise (none)
REPO_SPEC = Path(__file__).resolve().parents[2] / "tune_spaces" / "demo.yaml"


def machine() -> dict:
    """What the numbers were computed on: the CPU decides the math library's code path."""
    import numpy
    import torch

    from slmscale.bench.results import cpu_model

    return {
        "cpu": cpu_model(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def point_trials(spec_path: Path, points=POINTS) -> dict[tuple[str, int], object]:
    """The single-epoch trials of the resolved spec at `points` (model size, tokens)."""
    from slmscale.demo.run import _trials

    by_point = {  # the main grid's own runs: single epoch, seed 0 (the spec repeats some)
        (t.model_size, t.tokens): t for t in _trials(spec_path) if t.epochs == 1 and t.seed == 0
    }
    missing = [p for p in points if p not in by_point]
    if missing:
        raise UserError(f"{spec_path}: no single-epoch trial at {missing} (model size, tokens)")
    return {p: by_point[p] for p in points}


def data_identity(units_dir: Path) -> dict:
    from slmscale import units as units_io

    meta = units_io.load_meta(units_dir)
    return {
        "units_digest": units_io.dataset_digest(units_dir),
        "kmeans_sha256": meta.get("kmeans_sha256"),
    }


def write(workdir: Path, report_dir: Path, experiment: str = "demo") -> Path:
    """`report_dir/reference_trials.json` from a finished demo in `workdir`: the points' final
    test losses as the demo's MLflow store holds them (what its report shows)."""
    from slmscale.demo.stages import DemoLayout
    from slmscale.tracking.runs import find_trial_runs
    from slmscale.tracking.schema import M_TEST_LOSS_FINAL
    from slmscale.tracking.store import client
    from slmscale.units import write_json_atomic

    layout = DemoLayout(Path(workdir).resolve())
    spec_path = layout.spec(experiment)
    exp = client(layout.tracking_uri).get_experiment_by_name(experiment)
    if exp is None:
        raise UserError(f"{layout.tracking_uri}: no experiment {experiment!r}; run the demo first")
    points = []
    for (size, tokens), trial in point_trials(spec_path).items():
        runs = find_trial_runs(layout.tracking_uri, exp.experiment_id, trial.key)
        done = [r for r in runs if r.info.status == "FINISHED"]
        if not done or M_TEST_LOSS_FINAL not in done[0].data.metrics:
            raise UserError(f"{experiment}: trial {trial.key} ({size} at {tokens:,}) not finished")
        loss = done[0].data.metrics[M_TEST_LOSS_FINAL]
        points.append({"model_size": size, "tokens": tokens, "trial_key": trial.key, "loss": loss})
    doc = {
        "about": "slmscale.demo.reference: `python -m slmscale.demo.reference check` retrains "
        "these trials with the current code and compares",
        "spec": "tune_spaces/demo.yaml",
        "points": points,
        **data_identity(layout.units("demo")),
        "machine": machine(),
    }
    out = Path(report_dir) / REFERENCE_FILE
    write_json_atomic(out, doc)
    return out


def measure(workdir: Path, spec_file: Path = REPO_SPEC, world=None, points=POINTS) -> dict:
    """Make the demo's data in `workdir` (reused when there) and train the points' trials:
    the same document `write` makes, computed now."""
    from slmscale.demo.stages import (
        DemoLayout,
        _environment,
        stage_kmeans,
        stage_tokenize,
        stage_world,
        write_resolved_spec,
    )
    from slmscale.demo.world import PRESETS
    from slmscale.train import RuntimeOptions, train_one_trial

    layout = DemoLayout(Path(workdir).resolve())
    layout.workdir.mkdir(parents=True, exist_ok=True)
    world = world or replace(PRESETS["full"], audiobook_passages=0)  # no ablation corpus
    with _environment(layout):
        stage_world(layout, world)
        stage_kmeans(layout, seed=0)
        stage_tokenize(layout, engine="local")
        spec_path, _ = write_resolved_spec(layout, spec_file)
    out = []
    for (size, tokens), trial in point_trials(spec_path, points).items():
        result = train_one_trial(trial, options=RuntimeOptions(device="cpu"), warn=lambda _: None)
        loss = result.test_loss_final
        out.append({"model_size": size, "tokens": tokens, "trial_key": trial.key, "loss": loss})
    return {"points": out, **data_identity(layout.units("demo")), "machine": machine()}


def compare(reference: dict, now: dict, rtol: float = RTOL) -> list[str]:
    """One line per number that moved (empty: the code still produces the reference)."""
    problems = []
    ref_points = {(p["model_size"], p["tokens"]): p for p in reference["points"]}
    for p in now["points"]:
        ref = ref_points.get((p["model_size"], p["tokens"]))
        if ref is None:
            problems.append(f"{p['model_size']} at {p['tokens']:,}: not in the reference")
            continue
        if p["loss"] is None or abs(p["loss"] - ref["loss"]) > rtol * abs(ref["loss"]):
            problems.append(
                f"{p['model_size']} at {p['tokens']:,} tokens: test loss {p['loss']} now, "
                f"{ref['loss']} in the reference"
            )
        if p["trial_key"] != ref["trial_key"]:
            problems.append(
                f"{p['model_size']} at {p['tokens']:,} tokens: trial key {p['trial_key']} now, "
                f"{ref['trial_key']} in the reference (its data or config changed)"
            )
    for field in ("units_digest", "kmeans_sha256"):
        if reference.get(field) != now.get(field):
            problems.append(
                f"{field}: {now.get(field)} now, {reference.get(field)} in the reference"
            )
    if problems and reference.get("kmeans_sha256") != now.get("kmeans_sha256"):
        problems.append(
            "the k-means centroids differ, so the units and every loss do: the reference was made "
            f"on {reference.get('machine', {}).get('cpu', 'another machine')} "
            f"({reference.get('machine', {}).get('torch_cpu_capability', '?')}), this is "
            f"{now['machine']['cpu']} ({now['machine']['torch_cpu_capability']}); the math "
            "library's code path depends on the CPU (slmscale.demo.reference docstring)"
        )
    return problems


def check(reference_path: Path, workdir: Path) -> list[str]:
    if not Path(reference_path).is_file():
        raise UserError(f"{reference_path}: no such file (write it with `... reference write`)")
    reference = json.loads(Path(reference_path).read_text())
    return compare(reference, measure(workdir))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m slmscale.demo.reference")
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="record the reference trials of a finished demo")
    w.add_argument("--workdir", type=Path, required=True)
    w.add_argument("--report-dir", type=Path, default=Path("reports/demo"))
    c = sub.add_parser("check", help="retrain the reference trials and compare (exit 1: moved)")
    c.add_argument("--workdir", type=Path, default=Path("slmscale-demo-check"))
    c.add_argument("--reference", type=Path, default=Path("reports/demo") / REFERENCE_FILE)
    args = parser.parse_args(argv)
    try:
        if args.command == "write":
            print(f"written: {write(args.workdir, args.report_dir)}")
            return 0
        problems = check(args.reference, args.workdir)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in problems:
        print(f"moved: {line}")
    print("the code reproduces the reference" if not problems else f"{len(problems)} moved")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
