"""The bare training step, timed in a fresh process (pure core: no Ray).

Every bare timing runs `slmscale.train.bench.step_throughput` in a newly spawned process, as a
Ray Train worker runs it: measured here, the same step timed inside the long-lived bench process
(after the fit and data sections) ran 4x slower than in a fresh one, which made the Ray Train
"overhead" negative.  Spawned children inherit the thread limits (OMP_NUM_THREADS, ...).
Several children at once share the device: the shared-GPU figure.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from functools import lru_cache

from slmscale.model import ModelShape
from slmscale.train.bench import StepTiming, step_throughput


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
