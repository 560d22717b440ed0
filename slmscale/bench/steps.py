"""The bare training step, timed (pure core: runs on the GPU machine without Ray or MLflow).

`step_throughput` times the same step the trainer runs (forward, token-summed cross-entropy,
backward, clip, AdamW) on random tokens: the baseline for the Ray Train overhead ratio
(slmscale.bench.ray_train) and for MFU.  Benchmarks, not tests, assert numbers about it.

Every bare timing of the bench runs it in a newly spawned process, as a Ray Train worker runs
it: measured here, the same step timed inside the long-lived bench process (after the fit and
data sections) ran 4x slower than in a fresh one, which made the Ray Train "overhead" negative.
Spawned children inherit the thread limits (OMP_NUM_THREADS, ...).  Several children at once
share the device: the shared-GPU figure.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch

from slmscale.bench.context import N_UNITS, sync
from slmscale.model import ModelShape, build_model, vocab_size
from slmscale.train.device import resolve_device
from slmscale.train.optim import build_optimizer
from slmscale.train.throughput import mfu, peak_flops
from slmscale.trial import Optimizer

DEFAULT_OPT = Optimizer()  # the paper's AdamW (lr 5e-4, weight decay 0.1, betas 0.9 / 0.95)


@dataclass
class StepTiming:
    tokens_per_sec: float  # steady state: after the warmup steps
    seconds_per_step: float
    first_step_done_at: float  # time.time() when the first step finished (for start overhead)
    mfu: float | None
    device: str
    peak_memory_gib: float | None = None  # torch.cuda.max_memory_allocated (None off-GPU)

    def to_dict(self) -> dict:
        return asdict(self)


def step_throughput(
    shape: ModelShape,
    *,
    context: int = 2050,
    batch: int = 8,
    steps: int = 10,
    warmup: int = 2,
    device: str | None = None,
    compile: bool = False,
) -> StepTiming:
    """Steady tokens/s of the training step of `shape` at `batch` x `context` tokens per step."""
    dev = resolve_device(device)
    torch.manual_seed(0)
    model = build_model(shape, N_UNITS, context).to(dev)
    opt = build_optimizer(model, DEFAULT_OPT, dev)
    fwd = torch.compile(model) if compile else model
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, vocab_size(N_UNITS), (batch, context))).to(dev)
    first_done, t_start = None, None
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for i in range(warmup + steps):
        if i == warmup:
            sync(dev)
            t_start = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            logits = fwd(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1)
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if first_done is None:
            sync(dev)
            first_done = time.time()
    sync(dev)
    seconds = (time.perf_counter() - t_start) / steps
    tps = batch * context / seconds
    peak = peak_flops(torch.cuda.get_device_name(dev)) if dev.type == "cuda" else None
    memory = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
    return StepTiming(tps, seconds, first_done, mfu(tps, shape, context, peak), str(dev), memory)


def _child(args: tuple, queue) -> None:
    shape, kwargs = args
    try:
        started = time.time()
        timing = step_throughput(shape, **kwargs)
        queue.put((timing.to_dict(), timing.first_step_done_at - started))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        queue.put(f"{type(exc).__name__}: {exc}")


def steps_in_processes(shape: ModelShape, n: int, **kwargs) -> list[tuple[dict, float] | str]:
    """Run the step in `n` fresh processes at once; (timing, seconds to first step) or an error
    message per process."""
    spawn = mp.get_context("spawn")
    queue = spawn.Queue()
    procs = [spawn.Process(target=_child, args=((shape, kwargs), queue)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return results


@lru_cache(maxsize=16)
def cached_step(
    shape: ModelShape, context: int, batch: int, steps: int, device: str, compile: bool = False
) -> tuple[StepTiming, float]:
    """(timing, seconds from process start of work to the end of the first step) of the bare
    step in a fresh process; measured once per run (data and train sections share it)."""
    kwargs = dict(context=context, batch=batch, steps=steps, device=device, compile=compile)
    (result,) = steps_in_processes(shape, 1, warmup=3 if compile else 1, **kwargs)
    if isinstance(result, str):
        raise RuntimeError(f"bare step of {shape.name} failed: {result}")
    timing, first_s = result
    return StepTiming(**timing), first_s
