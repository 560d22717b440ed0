"""`slmscale demo`, end to end: the synthetic world through the real pipeline, under one folder.

    world          render the speech world (corpora + benchmarks)       slmscale.demo.world
    kmeans         log-mel k-means centroids on the training audio      slmscale kmeans
    tokenize       corpora (train + test), each benchmark, same centroids slmscale tokenize
    unigram        the units compressed (Figure 5), benchmarks encoded   slmscale unigram
    grid           the scaling grid, scored on the benchmarks            slmscale grid
    grid_audiobook the data ablation's audiobook runs (Figure 3)         slmscale grid
    grid_unigram   the tokenizer ablation's runs on unigram units        slmscale grid
    report         fit the laws, write the report with Figures 3 and 5   slmscale report --compare

`--quick` runs world, kmeans, tokenize, grid and report only (no ablations; the report says so).
The ablations are compared exactly as a user's study would be: `slmscale report --experiment
demo --compare demo_audiobook demo_unigram` (each grid its own experiment).

Every stage goes through the public CLI (`slmscale.cli.main`) exactly as a user would type it,
with MLflow in `<workdir>/mlflow.db` and every output under `<workdir>`.  A rerun reuses what is
done: the world (its manifest), the centroids, units datasets made with those centroids,
finished trials (the grid is not even started when every trial is FINISHED), and the report
when no trial was trained since it was written; so a second run takes seconds.

The data stages (world, kmeans, tokenize, unigram) and the demo's folder are in
slmscale.demo.stages; the grids and the report are here.

Edge module: it starts the other stages, but imports no Ray or MLflow itself (it reads the
store only through slmscale.tracking, to see whether every trial is already FINISHED).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from slmscale.demo.stages import (
    UNIGRAM_VOCAB,
    DemoLayout,
    _environment,
    cli,
    stage_kmeans,
    stage_tokenize,
    stage_unigram,
    stage_world,
    write_resolved_spec,
)
from slmscale.demo.world import PRESETS, WorldConfig

REPO_SPECS = Path(__file__).resolve().parents[2] / "tune_spaces"
# Bootstrap replicates for the Eq. 4 intervals: each is a full refit (~0.5-1 s here), so the
# report's default of 1000 would take longer than the whole grid.
BOOTSTRAP = {"quick": 40, "full": 100}
AUDIOBOOK_SPEC, UNIGRAM_SPEC = "demo_audiobook.yaml", "demo_unigram.yaml"
MIN_MULTI_EPOCH_RUNS = 3  # two R* from fewer multi-epoch points would be a guess


@dataclass
class DemoResult:
    timings: dict[str, float] = field(default_factory=dict)
    grid_stages: dict[str, str] = field(default_factory=dict)  # grid stage -> its grid's name
    experiments: list[str] = field(default_factory=list)  # where the grids' runs are
    reused: dict[str, bool] = field(default_factory=dict)
    report_dir: Path | None = None
    experiment: str = ""
    tracking_uri: str = ""
    compared: list[str] = field(default_factory=list)  # the ablations' experiments (--compare)


def _trials(spec_path: Path, overrides: list[str] = ()) -> list:
    from slmscale.grid.plan import load_plan

    return load_plan(str(spec_path), overrides).trials


def _schedule(spec_path: Path) -> str:
    from slmscale.config import load_grid_spec

    return load_grid_spec(spec_path).schedule.kind


def fit_law(spec_path: Path) -> str:
    """Eq. 7/8 (R*_N, R*_D on top of Eq. 4) when the grid has enough multi-epoch runs for it."""
    multi = sum(t.epochs > 1 for t in _trials(spec_path))
    return "data_constrained" if multi >= MIN_MULTI_EPOCH_RUNS else "chinchilla"


def _unfinished_trials(
    layout: DemoLayout, spec_path: Path, experiment: str, overrides: list[str] = ()
) -> int:
    """How many trials of the spec have no FINISHED run in the demo's store yet."""
    from slmscale.tracking.runs import find_trial_runs
    from slmscale.tracking.store import client

    trials = _trials(spec_path, overrides)
    exp = client(layout.tracking_uri).get_experiment_by_name(experiment)
    if exp is None:
        return len(trials)
    return sum(
        not any(
            r.info.status == "FINISHED"
            for r in find_trial_runs(layout.tracking_uri, exp.experiment_id, t.key)
        )
        for t in trials
    )


def stage_grid(
    layout: DemoLayout,
    spec_path: Path,
    experiment: str,
    stage: str = "grid",
    overrides: list[str] = (),
) -> bool:
    if _unfinished_trials(layout, spec_path, experiment, overrides) == 0:
        print(f"grid: every trial of {spec_path.name} is FINISHED in {layout.tracking_uri}")
        return True
    storage = layout.workdir / "grid_runs"
    cli(
        [
            "grid", str(spec_path), *overrides,
            "--tracking-uri", layout.tracking_uri,
            "--storage-path", str(storage),
            "--experiment", experiment,
        ],
        stage,
    )  # fmt: skip
    return False


def stage_report(
    layout: DemoLayout,
    experiment: str,
    report_dir: Path,
    bootstrap: int,
    grid_reused: bool,
    law: str,
    compare: list[str],
    compare_schedule: str | None,
) -> bool:
    """`slmscale report`, the ablations' experiments compared (Figures 3 and 5) when there are
    some; reused when the grids trained nothing new since it was written."""
    made = layout.report(experiment)
    reused = grid_reused and (made / "report.md").is_file() and (made / "fit.json").is_file()
    if reused:
        print(f"report: reusing {made} (no new runs since it was written)")
    else:
        argv = ["report", "--experiment", experiment, "--tracking-uri", layout.tracking_uri]
        argv += ["--bootstrap", str(bootstrap), "--law", law, "--out", str(made)]
        if compare:
            argv += ["--compare", *compare]
        if compare_schedule:
            argv += ["--compare-schedule", compare_schedule]
        cli(argv, "report")
    if report_dir.resolve() != made.resolve():
        if report_dir.exists():
            shutil.rmtree(report_dir)
        shutil.copytree(made, report_dir)
    return reused


def closing_lines(result: DemoResult, ui: str = "http://127.0.0.1:5000") -> list[str]:
    """The demo's last lines: the report, how to start the MLflow UI, the grid's saved view."""
    from slmscale.tracking.grid_run import grid_view_id, view_url
    from slmscale.tracking.store import client

    lines = [
        f"report:  {result.report_dir / 'report.html'}",
        f"         {result.report_dir / 'report.md'}",
        f"browse the runs:  mlflow ui --backend-store-uri {result.tracking_uri}",
    ]
    exp = client(result.tracking_uri).get_experiment_by_name(result.experiment)
    if exp is not None:
        link = view_url(ui, exp.experiment_id, grid_view_id(result.experiment))
        lines.append(f"then open the grid's view:  {link}")
    return lines


def _timed(result: DemoResult, name: str, fn: Callable[[], bool]) -> None:
    t0 = time.monotonic()
    print(f"\n== demo stage: {name}", flush=True)
    result.reused[name] = fn()
    result.timings[name] = time.monotonic() - t0
    print(f"== {name}: {result.timings[name]:.1f} s", flush=True)


def run_demo(
    workdir: Path,
    *,
    quick: bool = False,
    seed: int = 0,
    world: WorldConfig | None = None,
    spec_file: Path | None = None,
    report_dir: Path | None = None,
    tokenize_engine: str = "ray",
    ablations: bool | None = None,
    audiobook_spec: Path | None = None,
    unigram_spec: Path | None = None,
    unigram_vocab: int = UNIGRAM_VOCAB,
    compare_schedules: bool = False,
) -> DemoResult:
    """The whole demo; returns the stage timings and where the report is.

    `compare_schedules` also trains the main grid under the other LR schedule (cosine <-> WSD,
    docs/grid.md "Schedules") as its own experiment, and the report compares the two.

    `ablations` (default: not `quick`, and only with the repo's specs) adds the audiobook
    corpus and the unigram tokenizer, their grids (`audiobook_spec`, `unigram_spec`: default
    the repo's), and Figures 3 and 5 of the report.
    """
    layout = DemoLayout(Path(workdir).resolve())
    layout.workdir.mkdir(parents=True, exist_ok=True)
    if ablations is None:
        ablations = not quick and spec_file is None
    base = world or PRESETS["quick" if quick else "full"]
    config = replace(base, seed=seed)
    if not ablations:
        config = replace(config, audiobook_passages=0)
    spec_file = spec_file or REPO_SPECS / ("demo_quick.yaml" if quick else "demo.yaml")
    result = DemoResult(tracking_uri=layout.tracking_uri)
    with _environment(layout):
        _timed(result, "world", lambda: stage_world(layout, config))
        _timed(result, "kmeans", lambda: stage_kmeans(layout, seed))
        _timed(result, "tokenize", lambda: stage_tokenize(layout, tokenize_engine))
        if ablations:
            _timed(result, "unigram", lambda: stage_unigram(layout, unigram_vocab))

        def grid(stage: str, path: Path, experiment: str, overrides: list[str] = ()) -> None:
            result.grid_stages[stage] = experiment
            result.experiments.append(experiment)
            _timed(result, stage, lambda: stage_grid(layout, path, experiment, stage, overrides))

        spec_path, result.experiment = write_resolved_spec(layout, spec_file)
        grid("grid", spec_path, result.experiment)
        other = None
        if compare_schedules:
            kind = "cosine" if _schedule(spec_path) == "wsd" else "wsd"
            other = f"{result.experiment}_{kind}"
            grid(f"grid_{kind}", spec_path, other, [f"schedule.kind={kind}"])
        if ablations:
            # Each ablation grid in its own experiment, as a user's study would be: the report
            # compares them with the main one (`slmscale report --compare`).
            book = write_resolved_spec(layout, audiobook_spec or REPO_SPECS / AUDIOBOOK_SPEC)
            uni = write_resolved_spec(layout, unigram_spec or REPO_SPECS / UNIGRAM_SPEC)
            result.compared = [book[1], uni[1]]
            grid("grid_audiobook", *book)
            grid("grid_unigram", *uni)
        report_dir = Path(report_dir or layout.report(result.experiment))
        boot = BOOTSTRAP["quick" if quick else "full"]
        grids_reused = all(result.reused[k] for k in result.grid_stages)
        _timed(
            result,
            "report",
            lambda: stage_report(
                layout,
                result.experiment,
                report_dir,
                boot,
                grids_reused,
                law=fit_law(spec_path),
                compare=result.compared,
                compare_schedule=other,
            ),
        )
    result.report_dir = report_dir
    return result
