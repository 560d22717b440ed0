"""Run the bench sections, collect their rows, write the results (pure core; Ray only lazily in
the train section's CPU path)."""

from __future__ import annotations

import json
import queue
import time
import traceback
from collections.abc import Callable
from multiprocessing import get_context
from pathlib import Path

from slmscale.bench.context import Context, Scale, limit_threads
from slmscale.bench.results import (
    Figure,
    load_average,
    machine_description,
    machine_slug,
    write_results,
)
from slmscale.errors import UserError
from slmscale.paths import output_root


def _sections() -> dict[str, Callable[[Context], list[Figure]]]:
    from slmscale.bench.data import measure_data
    from slmscale.bench.evaluate import measure_eval
    from slmscale.bench.fit import measure_fit
    from slmscale.bench.tokenize import measure_tokenize
    from slmscale.bench.train import measure_train

    return {
        "fit": measure_fit,
        "data": measure_data,
        "train": measure_train,
        "tokenize": measure_tokenize,
        "eval": measure_eval,
    }


SECTIONS = ("fit", "data", "train", "tokenize", "eval")
# What `--gpu` runs unless --only says otherwise: the sections with GPU figures (fit has none and
# takes minutes of CPU), so the GPU bench fits in one 10-minute call on the GPU machine.
GPU_SECTIONS = ("data", "train", "tokenize", "eval")
STOPPED = "stopped (Ctrl-C or a time limit) before this section ended: not measured"


def parse_only(only: str | None, gpu: bool = False) -> list[str]:
    """`--only fit,eval` -> ["fit", "eval"] in bench order; unknown names are a UserError.
    Without --only: every section, or with `gpu` the ones that have GPU figures."""
    if not only:
        return list(GPU_SECTIONS if gpu else SECTIONS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown or not names:
        raise UserError(
            f"--only {only}: unknown section(s) {unknown}; known: {', '.join(SECTIONS)}"
        )
    return [n for n in SECTIONS if n in names]


def gpu_device(requested: bool) -> str | None:
    """'cuda' when --gpu was given and torch sees a GPU; None otherwise (rows become n/a)."""
    if not requested:
        return None
    import torch

    return "cuda" if torch.cuda.is_available() else None


def run_section(name: str, scale: Scale, gpu: str | None, progress=None) -> list[Figure]:
    """One section's rows, with the CPU thread limit; a crash becomes one row saying so."""
    try:
        with limit_threads(scale.cpu_threads):
            return _sections()[name](Context(scale, gpu, progress))
    except Exception as exc:  # noqa: BLE001 - reported in the table, traceback in extra
        tb = traceback.format_exc(limit=6)
        note = f"{type(exc).__name__}: {exc}"
        return [Figure(name, "section failed", None, "", note=note, extra={"traceback": tb})]


def _section_child(name: str, scale: Scale, gpu: str | None, queue) -> None:
    queue.put(run_section(name, scale, gpu))


def _in_fresh_process(name: str, scale: Scale, gpu: str | None, progress) -> list[Figure]:
    """`run_section` in a newly spawned process; the progress line ticks while it runs.  An
    interrupt (Ctrl-C, the GPU script's time limit) stops the child too."""
    spawn = get_context("spawn")
    results = spawn.Queue()
    child = spawn.Process(target=_section_child, args=(name, scale, gpu, results))
    child.start()
    try:
        while True:
            try:
                return results.get(timeout=5.0)
            except queue.Empty:
                if not child.is_alive():
                    why = f"its process ended with exit code {child.exitcode} and no rows"
                    return [Figure(name, "section failed", None, "", note=why)]
                if progress is not None:
                    progress.update(0)
    finally:
        if child.is_alive():
            child.terminate()
        child.join(timeout=30)


def run_bench(
    sections: list[str], scale: Scale, gpu: str | None, progress=None, isolate: bool = True
) -> tuple[list[Figure], dict]:
    """Every row of the chosen sections, and the machine description (with load averages).

    With `isolate`, each section runs in a fresh process: measured here, a training step timed
    in the process that had just run the fit section was 4x slower than in a fresh one (thread
    pools and allocator state carry over), so sections must not share a process.
    """
    desc = machine_description()
    desc |= {"scale": scale.name, "gpu_measured": gpu is not None, "sections": sections}
    desc["cpu_threads"] = scale.cpu_threads
    figures: list[Figure] = []
    timings = {}
    for i, name in enumerate(sections):
        t0 = time.perf_counter()
        if progress is not None:
            progress.update(0, extra=f"{name}...")
        try:
            if isolate:
                figures += _in_fresh_process(name, scale, gpu, progress)
            else:
                figures += run_section(name, scale, gpu, progress)
        except KeyboardInterrupt:  # the rows measured so far are still written
            figures += [Figure(n, "section stopped", None, "", note=STOPPED) for n in sections[i:]]
            desc["stopped_in"] = name
            break
        timings[name] = round(time.perf_counter() - t0, 2)
        if progress is not None:
            progress.update(1, extra=f"{name} done")
    desc["load_average_end"] = load_average()
    desc["section_seconds"] = timings
    return figures, desc


def _merged(figures: list[Figure], desc: dict, path: Path) -> tuple[list[Figure], dict]:
    """With --only, keep the other sections' rows of an earlier run of the same machine."""
    if set(desc["sections"]) == set(SECTIONS) or not path.is_file():
        return figures, desc
    try:
        old = json.loads(path.read_text())
        kept = [Figure(**f) for f in old["figures"] if f["section"] not in desc["sections"]]
    except (ValueError, KeyError, TypeError):
        return figures, desc
    merged = {"sections_kept_from": old.get("machine", {}).get("date")}
    by_section = {n: [f for f in figures + kept if f.section == n] for n in SECTIONS}
    return [f for n in SECTIONS for f in by_section[n]], desc | merged


def save(figures: list[Figure], desc: dict, extra_json: str | Path | None = None) -> list[Path]:
    """Write <output root>/reports/bench/<machine>.json (+ .md), and `extra_json` too when given
    (output root: $SLMSCALE_HOME or cwd).

    The machine's file keeps the rows of sections this run did not measure (`--only`)."""
    default = output_root() / "reports" / "bench" / f"{machine_slug(desc)}.json"
    write_results(*_merged(figures, desc, default), default)
    paths = [default]
    if extra_json:
        write_results(figures, desc, Path(extra_json))
        paths.append(Path(extra_json))
    return paths
