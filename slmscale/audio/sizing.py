"""How many encoder actors, and how much audio per batch, the machine's memory allows.

With the real 512-channel HuBERT conv stack one 200 s CPU batch adds ~3.2 GB, so "one actor per
two CPUs" asked ~30 GB of a 16-core box.  `plan_actors` starts from the CPU (or GPU) count and
the estimate of `unit_encoder.memory_per_actor` (runtime + weights + one batch's activations),
and lowers the actor count, then the batch seconds, until the actors fit in the memory available.
The figure is printed by the pipeline; Ray is asked to reserve it (`memory=` on the actors).

Pure arithmetic: no Ray here (the pipeline reads Ray's resources and passes them in).
"""

from __future__ import annotations

from dataclasses import dataclass

from slmscale.audio.unit_encoder import GIB, memory_per_actor

DEFAULT_BATCH_SECONDS = 200.0
# On CPUs a big batch buys little speed and costs memory, and progress moves once per batch:
# HuBERT-base ran at ~5x real time on the 2-core VM, so 40 s batches report every ~8 s there.
CPU_BATCH_SECONDS = 40.0


@dataclass(frozen=True)
class ActorPlan:
    num_actors: int
    batch_seconds: float
    num_gpus: float
    actor_cpus: float
    threads: int
    per_actor_bytes: float
    available_bytes: float | None
    memory_request: int | None  # bytes Ray reserves per actor (None: no reservation)
    message: str


def plan_actors(
    encoder,
    *,
    cpus: int,
    gpus: float,
    available_bytes: float | None,
    num_actors: int | None = None,
    num_gpus: float | None = None,
    batch_seconds: float = DEFAULT_BATCH_SECONDS,
    fixed_batch: bool = False,
    min_batch_seconds: float = 1.0,
) -> ActorPlan:
    """Actor count and batch seconds: the user's values where given (`num_actors`; the batch
    seconds when `fixed_batch`), else sized to the memory available."""
    if num_gpus is None:
        num_gpus = 1 if gpus > 0 else 0
    by_device = max(1, int(gpus)) if num_gpus else max(1, cpus // 2)
    bs = batch_seconds if fixed_batch or num_gpus else min(batch_seconds, CPU_BATCH_SECONDS)
    bs = max(bs, min_batch_seconds) if not fixed_batch else bs
    est = memory_per_actor(encoder, bs)
    n = num_actors or by_device
    note = ""
    if num_gpus:  # activations live on the GPU; host memory holds the runtime and weights
        est = {**est, "batch": 0.0, "total": est["runtime"] + est["weights"]}
    elif available_bytes and num_actors is None:
        fits = int(available_bytes // est["total"])
        if fits < n:
            n = max(1, fits)
            note = f" (memory allows {fits}; CPUs/GPUs would allow {by_device})"
        if fits < 1 and not fixed_batch:
            room = available_bytes - est["runtime"] - est["weights"]
            bs = max(min_batch_seconds, room / est["per_second"]) if room > 0 else min_batch_seconds
            est = memory_per_actor(encoder, bs)
            note = " (batch seconds lowered so that one actor fits)"
    actor_cpus = 0.5 if num_gpus else max(0.5, cpus / n - 0.5)
    fits_one = available_bytes is None or est["total"] <= available_bytes
    request = int(est["total"]) if available_bytes and fits_one else None
    avail = f"{available_bytes / GIB:.1f} GiB available" if available_bytes else "memory unknown"
    message = (
        f"{n} encoder actor(s){' on GPUs' if num_gpus else ''} x {est['total'] / GIB:.1f} GiB "
        f"(runtime {est['runtime'] / GIB:.1f} + weights {est['weights'] / GIB:.2f} + "
        f"{bs:g} s batches {est['batch'] / GIB:.1f}) of {avail} host memory{note}"
    )
    if not fits_one:
        message += "; even one actor may not fit: lower --batch-seconds"
    return ActorPlan(
        num_actors=n,
        batch_seconds=bs,
        num_gpus=num_gpus,
        actor_cpus=actor_cpus,
        threads=max(1, int(actor_cpus + 0.5)),
        per_actor_bytes=est["total"],
        available_bytes=available_bytes,
        memory_request=request,
        message=message,
    )


def available_memory() -> float | None:
    """Bytes of memory available on this machine now (MemAvailable), None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None
