"""The demo's folder and its data stages: the world, k-means, tokenize, unigram, resolved specs.

Each stage goes through the public CLI (`slmscale.cli.main`) exactly as a user would type it, and
is reused when its output is current (the world by its manifest, units made with the current
centroids).  slmscale.demo.run strings them together with the grids and the report.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from slmscale.demo.benchmarks import BENCHMARK_DIRS, audio_dir
from slmscale.demo.corpus import AUDIOBOOK_SPLIT
from slmscale.demo.world import BENCHMARK_SPLIT, TEST_SPLIT, TRAIN_SPLIT, WorldConfig
from slmscale.errors import UserError

N_UNITS = 32  # log-mel k-means K: fewer flickering units (shorter sequences) than 64
KMEANS_MAX_FRAMES = 60_000
DB_FILE = "mlflow.db"
# Settings for the Ray session of the grids, set before its ray.init so every Ray process (Tune
# trial actors, Train controllers, Train workers) inherits them.  Each trial here trains for
# seconds, so what Ray Train does around it is most of its time: its JSON log files (one pair
# per controller and worker process) are not needed on one machine at this scale.  (The
# controller's health-check poll and the preemption watcher, off on a local Ray, are the grid's
# own settings, slmscale.grid.trainable.HEALTH_CHECK_S and slmscale.grid.tune, for every grid.)
RAY_SETTINGS = {
    "RAY_TRAIN_ENABLE_CONTROLLER_STRUCTURED_LOGGING": "0",
    "RAY_TRAIN_ENABLE_WORKER_STRUCTURED_LOGGING": "0",
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
    for k, v in RAY_SETTINGS.items():  # a value the user set in the environment wins
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
