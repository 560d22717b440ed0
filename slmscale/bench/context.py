"""What a bench run measures and where: the sizes of each section (`Scale`) and the device.

`FULL` is what `slmscale bench` runs; `QUICK` (`--quick`) keeps every figure but shrinks the work
(and says where a figure is extrapolated); tests build smaller ones with `dataclasses.replace`.
"""

from __future__ import annotations

import cProfile
import os
import pstats
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

from slmscale.model import PAPER_SIZES, ModelShape

N_UNITS = 500  # K of every bench model and units dataset (the paper's)
TINY = ModelShape("tiny-2x64", n_layers=2, dim=64, n_heads=2)
SMALL = ModelShape("small-4x256", n_layers=4, dim=256, n_heads=4)


@dataclass(frozen=True)
class Scale:
    name: str
    # fit: 240 synthetic points; the naive loop over every start, or a subset extrapolated
    fit_points: int = 240
    naive_starts: int | None = None  # None: all starts
    bootstrap: int = 1000
    # data: a units dataset of `data_tokens`, read in paper batches of `data_batch` x context
    data_tokens: int = 4_000_000
    data_batch: int = 64
    consume_shape: ModelShape = PAPER_SIZES["20M"]
    consume_context: int = 2050
    consume_batch: int = 1
    consume_steps: int = 2
    # train on CPU: bare vs Ray Train per size
    cpu_shapes: tuple[ModelShape, ...] = (TINY, SMALL)
    cpu_context: int = 512
    cpu_batch: int = 4
    cpu_steps: int = 6
    ray: bool = True
    # train on GPU
    gpu_shapes: tuple[ModelShape, ...] = tuple(PAPER_SIZES[n] for n in ("20M", "85M", "309M"))
    gpu_context: int = 2050
    gpu_steps: int = 10
    gpu_shared_trials: int = 4
    # tokenize
    logmel_seconds: float = 1200.0
    unbatched_seconds: float = 300.0
    hubert_seconds: float = 7200.0
    hubert_unbatched_seconds: float = 600.0
    # eval
    eval_shape: ModelShape = PAPER_SIZES["20M"]
    eval_pairs: int = 256
    cpu_threads: int | None = 1  # torch/BLAS threads of the CPU figures (see limit_threads)


FULL = Scale("full")
QUICK = Scale(
    "quick",
    naive_starts=300,
    bootstrap=100,
    data_tokens=1_000_000,
    consume_steps=1,
    cpu_shapes=(TINY,),
    cpu_context=256,
    cpu_steps=4,
    gpu_steps=5,
    logmel_seconds=240.0,
    unbatched_seconds=60.0,
    hubert_seconds=1800.0,
    hubert_unbatched_seconds=150.0,
    eval_shape=SMALL,
    eval_pairs=64,
)


@dataclass
class Context:
    """One bench run: its scale, the torch device of the GPU figures (None: not measured)."""

    scale: Scale
    gpu_device: str | None = None
    progress: object | None = None

    def step(self, what: str) -> None:
        if self.progress is not None:
            self.progress.update(0, extra=what)


THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextmanager
def limit_threads(n: int | None) -> Iterator[None]:
    """torch intra-op and BLAS threads limited to `n` here and in processes started meanwhile
    (bootstrap workers, Ray workers); None: the libraries' defaults (one per core).

    On a shared 2-core machine a second thread spins against other users' processes: measured
    here, the tiny model's step ran 30x slower with 2 torch threads than with 1 at load 20, and
    L-BFGS-B 20x slower with OpenBLAS's 2 threads.  So CPU figures run with 1 thread by default.
    """
    import torch

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the GPU machine lacks it: the env and torch limits still hold
        threadpool_limits = None
    saved_env = {k: os.environ.get(k) for k in THREAD_ENV}
    saved_torch = torch.get_num_threads()
    _set_env({k: None if n is None else str(n) for k in THREAD_ENV})
    torch.set_num_threads(n or os.cpu_count() or 1)
    try:
        with threadpool_limits(n or os.cpu_count()) if threadpool_limits else nullcontext():
            yield
    finally:
        torch.set_num_threads(saved_torch)
        _set_env(saved_env)


def _set_env(values: dict[str, str | None]) -> None:
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def sync(device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so a timer sees its end."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def profile_top(fn, *args, n: int = 4, **kwargs) -> str:
    """What limits `fn`: its top functions by own time under cProfile, as 'name (share%)'."""
    prof = cProfile.Profile()
    prof.runcall(fn, *args, **kwargs)
    stats = pstats.Stats(prof)
    total = stats.total_tt or 1.0
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:n]
    return "profile: " + ", ".join(
        f"{_label(func)} {100 * s[2] / total:.0f}% ({s[1]:,} calls)" for func, s in rows
    )


def _label(func: tuple) -> str:
    path, _, name = func
    return name.strip("<>{}") if path == "~" else f"{path.rsplit('/', 1)[-1]}:{name}"


def gpu_profile_top(fn, *args, n: int = 4, **kwargs) -> str:
    """Top GPU kernels by own device time under torch.profiler (for the GPU targets)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn(*args, **kwargs)
    events = prof.key_averages()
    attr = "self_device_time_total"
    if not events or not hasattr(events[0], attr):
        attr = "self_cuda_time_total"
    total = sum(getattr(e, attr) for e in events) or 1.0
    top = sorted(events, key=lambda e: getattr(e, attr), reverse=True)[:n]
    return "GPU profile: " + ", ".join(
        f"{e.key[:48]} {100 * getattr(e, attr) / total:.0f}%" for e in top
    )


def tiny_grid(units, name: str, model: dict, tokens: list[int], **fields):
    """(trials, data) of a tiny CPU grid on `units` (batch 8 x 64, fp32), as `slmscale grid`
    expands it; `fields` set or override spec fields (optimizer, eval, schedule, ...)."""
    from slmscale.config.base import parse_model
    from slmscale.config.grid import GridSpec
    from slmscale.grid.expand import expand_grid, resolve_data

    raw = {
        "name": name,
        "units": [{"path": str(units)}],
        "models": [model],
        "tokens": tokens,
        "epochs": ["auto"],
        "batch_size": 8,
        "context": 64,
        "train": {"precision": "fp32"},
        **fields,
    }
    spec = parse_model(GridSpec, raw, "bench")
    data = resolve_data(spec)
    return expand_grid(spec, data), data
