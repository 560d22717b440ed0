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

Edge module: it starts the other stages, but imports no Ray or MLflow itself (it reads the
store only through slmscale.tracking, to see whether every trial is already FINISHED).
Over 400 lines on purpose: the stages, in the order they run, are the demo; split across files
they would read as a framework.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from slmscale.demo.benchmarks import BENCHMARK_DIRS, audio_dir
from slmscale.demo.corpus import AUDIOBOOK_SPLIT
from slmscale.demo.world import BENCHMARK_SPLIT, PRESETS, TEST_SPLIT, TRAIN_SPLIT, WorldConfig
from slmscale.errors import UserError

REPO_SPECS = Path(__file__).resolve().parents[2] / "tune_spaces"
N_UNITS = 32  # log-mel k-means K: fewer flickering units (shorter sequences) than 64
KMEANS_MAX_FRAMES = 60_000
# Bootstrap replicates for the Eq. 4 intervals: each is a full refit (~0.5-1 s here), so the
# report's default of 1000 would take longer than the whole grid.
BOOTSTRAP = {"quick": 40, "full": 100}
AUDIOBOOK_SPEC, UNIGRAM_SPEC = "demo_audiobook.yaml", "demo_unigram.yaml"
MIN_MULTI_EPOCH_RUNS = 3  # two R* from fewer multi-epoch points would be a guess
DEFAULT_WORKDIR = "slmscale-demo"
DB_FILE = "mlflow.db"
# Settings for the Ray session of the grids, set before its ray.init so every Ray process (Tune
# trial actors, Train controllers, Train workers) inherits them.  Each trial here trains for
# seconds, so what Ray Train does around it is most of its time: its JSON log files (one pair
# per controller and worker process) and its preemption watcher (a poll per worker group).
# Neither is needed on one machine at this scale.  (The controller's health-check poll is the
# grid's own setting, slmscale.grid.trainable.HEALTH_CHECK_S, for every grid alike.)
RAY_SETTINGS = {
    "RAY_TRAIN_ENABLE_CONTROLLER_STRUCTURED_LOGGING": "0",
    "RAY_TRAIN_ENABLE_WORKER_STRUCTURED_LOGGING": "0",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
}
# The ablations (full demo only): the audiobook corpus's units and the unigram tokenizer.
AUDIOBOOK_UNITS = "audiobook"
UNIGRAM_VOCAB = 256  # K = 32 units -> 256 pieces (the paper: K = 500 -> 5000)
UNIGRAM_SUFFIX = "_unigram"


@dataclass
class DemoLayout:
    """Where everything goes under the working folder."""

    workdir: Path

    @property
    def world(self) -> Path:
        return self.workdir / "world"

    @property
    def kmeans(self) -> Path:
        return self.workdir / f"kmeans-logmel-k{N_UNITS}.npy"

    def units(self, name: str) -> Path:
        return self.workdir / "units" / name

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{(self.workdir / DB_FILE).resolve()}"

    def spec(self, name: str) -> Path:
        return self.workdir / f"{name}.resolved.yaml"

    def report(self, name: str) -> Path:
        return self.workdir / "reports" / name


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


def cli(argv: list[str], stage: str) -> None:
    """Run one `slmscale` command in this process; a non-zero exit stops the demo."""
    from slmscale.cli import main

    print(f"\n$ slmscale {' '.join(argv)}", flush=True)
    rc = main(argv)
    if rc != 0:
        raise UserError(f"demo: stage {stage!r} failed (`slmscale {argv[0]}` exited with {rc})")


@contextmanager
def _environment(layout: DemoLayout):
    """Point every stage's defaults (output root, tracking store) at the working folder."""
    keys = ("SLMSCALE_HOME", "MLFLOW_TRACKING_URI", *RAY_SETTINGS)
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["SLMSCALE_HOME"] = str(layout.workdir)
    os.environ["MLFLOW_TRACKING_URI"] = layout.tracking_uri
    # Set before the grid's ray.init so every Ray process inherits them (a value the user set
    # in the environment wins).
    for k, v in RAY_SETTINGS.items():
        os.environ.setdefault(k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def stage_world(layout: DemoLayout, config: WorldConfig) -> bool:
    from slmscale.demo.world import build_world

    manifest, reused = build_world(layout.world, config)
    hours = sum(manifest["seconds"].values()) / 3600
    print(
        f"demo world: {hours:.2f} h of audio under {layout.world} ({'reused' if reused else 'made'})"
    )
    return reused


def stage_kmeans(layout: DemoLayout, seed: int) -> bool:
    if layout.kmeans.is_file():
        print(f"kmeans: reusing {layout.kmeans}")
        return True
    cli(
        [
            "kmeans",
            "--input", f"demo:train={layout.world / TRAIN_SPLIT}",
            "--encoder", "logmel",
            "--k", str(N_UNITS),
            "--max-frames", str(KMEANS_MAX_FRAMES),
            "--seed", str(seed),
            "--out", str(layout.kmeans),
        ],
        "kmeans",
    )  # fmt: skip
    return False


def _units_current(layout: DemoLayout, name: str) -> bool:
    """A units dataset made with the current centroids and complete (its meta written last)."""
    from slmscale.units import META_FILE, sha256_file

    meta = layout.units(name) / META_FILE
    if not meta.is_file():
        return False
    return json.loads(meta.read_text()).get("kmeans_sha256") == sha256_file(layout.kmeans)


def tokenize_jobs(layout: DemoLayout) -> dict[str, list[str]]:
    """units dataset name -> its `--input` specs."""
    jobs = {
        "demo": [
            f"demo:train={layout.world / TRAIN_SPLIT}",
            f"demo:test={layout.world / TEST_SPLIT}",
        ]
    }
    if (layout.world / AUDIOBOOK_SPLIT).is_dir():  # the data ablation: same test split
        jobs[AUDIOBOOK_UNITS] = [
            f"{AUDIOBOOK_UNITS}:train={layout.world / AUDIOBOOK_SPLIT}",
            f"{AUDIOBOOK_UNITS}:test={layout.world / TEST_SPLIT}",
        ]
    for name in BENCHMARK_DIRS:
        folder = audio_dir(layout.world / "benchmarks", name, BENCHMARK_SPLIT)
        jobs[name] = [f"{name}:{BENCHMARK_SPLIT}={folder}"]
    return jobs


def stage_tokenize(layout: DemoLayout, engine: str = "ray") -> bool:
    reused = True
    for name, inputs in tokenize_jobs(layout).items():
        if _units_current(layout, name):
            print(f"tokenize: reusing {layout.units(name)}")
            continue
        reused = False
        argv = ["tokenize", *(a for spec in inputs for a in ("--input", spec))]
        argv += ["--encoder", "logmel", "--kmeans", str(layout.kmeans)]
        argv += ["--out", str(layout.units(name))]
        # The benchmarks are minutes of audio: in-process beats starting a Ray cluster for them.
        argv += ["--engine", engine if name in ("demo", AUDIOBOOK_UNITS) else "local"]
        cli(argv, "tokenize")
    return reused


def stage_unigram(layout: DemoLayout, vocab: int = UNIGRAM_VOCAB) -> bool:
    """`slmscale unigram` on the demo's units, then each benchmark encoded with that model."""
    from slmscale.demo.unigram import encode_like

    out = layout.units("demo" + UNIGRAM_SUFFIX)
    model = out / "unigram.model"
    reused = _unigram_current(layout, out)
    if reused:
        print(f"unigram: reusing {out}")
    else:
        cli(
            [
                "unigram",
                "--units", str(layout.units("demo")),
                "--out", str(out),
                "--vocab", str(vocab),
            ],
            "unigram",
        )  # fmt: skip
    for name in BENCHMARK_DIRS:
        target = layout.units(name + UNIGRAM_SUFFIX)
        if reused and _unigram_current(layout, target, model):
            continue
        reused = False
        encode_like(model, layout.units(name), target)
        print(f"unigram: encoded {layout.units(name)} -> {target}")
    return reused


def _unigram_current(layout: DemoLayout, out: Path, model: Path | None = None) -> bool:
    """A unigram units dataset made from the current demo units (and with `model`, when given)."""
    from slmscale.units import META_FILE, meta_hash, sha256_file

    meta = out / META_FILE
    if not meta.is_file():
        return False
    m = json.loads(meta.read_text())
    if model is not None:
        return model.is_file() and m.get("unigram_sha256") == sha256_file(model)
    src = m.get("source_units") or {}
    return src.get("meta_hash") == meta_hash(layout.units("demo"))


def write_resolved_spec(layout: DemoLayout, spec_file: Path) -> tuple[Path, str]:
    """The spec with its relative paths made absolute under the working folder."""
    import yaml

    from slmscale.config import load_grid_spec

    spec = load_grid_spec(spec_file)
    data = spec.model_dump(mode="json", exclude_none=True)
    for u in data["units"]:
        u["path"] = str(layout.workdir / u["path"])
    for b in data["benchmarks"]:
        b["units"] = str(layout.workdir / b["units"])
        b["root"] = str(layout.workdir / b["root"])
    out = layout.spec(spec.name)
    header = f"# Written by `slmscale demo` from {spec_file}; edit that file, not this one.\n"
    from slmscale.units import write_bytes_atomic

    write_bytes_atomic(out, (header + yaml.safe_dump(data, sort_keys=False)).encode())
    load_grid_spec(out)  # what we wrote must validate as it is
    return out, spec.name


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
    law: str = "chinchilla",
    compare: list[str] | None = None,
    compare_schedule: str | None = None,
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
        spec_path, result.experiment = write_resolved_spec(layout, spec_file)
        _timed(result, "grid", lambda: stage_grid(layout, spec_path, result.experiment))
        result.grid_stages = {"grid": result.experiment}
        result.experiments = [result.experiment]
        other = None
        if compare_schedules:
            kind = "cosine" if _schedule(spec_path) == "wsd" else "wsd"
            other = f"{result.experiment}_{kind}"
            over = [f"schedule.kind={kind}"]
            result.grid_stages[f"grid_{kind}"] = other
            result.experiments.append(other)
            _timed(
                result,
                f"grid_{kind}",
                lambda: stage_grid(layout, spec_path, other, f"grid_{kind}", over),
            )
        if ablations:
            # Each ablation grid in its own experiment, as a user's study would be: the report
            # compares them with the main one (`slmscale report --compare`).
            book_path, book_exp = write_resolved_spec(
                layout, audiobook_spec or REPO_SPECS / AUDIOBOOK_SPEC
            )
            uni_path, uni_exp = write_resolved_spec(
                layout, unigram_spec or REPO_SPECS / UNIGRAM_SPEC
            )
            result.grid_stages.update({"grid_audiobook": book_exp, "grid_unigram": uni_exp})
            result.experiments += [book_exp, uni_exp]
            result.compared = [book_exp, uni_exp]
            _timed(
                result,
                "grid_audiobook",
                lambda: stage_grid(layout, book_path, book_exp, "grid_audiobook"),
            )
            _timed(
                result,
                "grid_unigram",
                lambda: stage_grid(layout, uni_path, uni_exp, "grid_unigram"),
            )
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
                fit_law(spec_path),
                compare=result.compared,
                compare_schedule=other,
            ),
        )
    result.report_dir = report_dir
    return result
