"""Stage 1 at corpus scale: the Ray Data edge around the pure `UnitEncoder`.

    inputs (paths / rows) -> decode tasks (CPU: soundfile, downmix, resample)
        -> encoder actor pool (GPU actors when there are GPUs; k-means on the same device)
        -> driver: rows collected per shard, a shard written the moment it is complete

Only references to inputs are in the driver; audio is decoded in tasks and streamed through the
actors, so the corpus is never held in memory.  Progress is counted in audio-seconds: the total
from file headers, the done part reported by the encoder after every batch (actors report to a
small counter actor that a driver thread polls every second), so a long file moves the bar.
Encoder actors are sized to the memory there is (`sizing.py`), and the figure is printed.
`engine="local"` runs the same work in this process without Ray (the GPU benchmark machine has
no Ray).  `tokenize()` is the Python API; `slmscale tokenize` is a thin CLI over it.

Just over 400 lines on purpose: both engines and the shard writer they share, side by side, so
that what the Ray path does can be read against the plain one.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from slmscale import __version__
from slmscale.audio.io import SAMPLE_RATE, InputSpec, find_inputs, probe_seconds
from slmscale.audio.kmeans import load_centroids
from slmscale.audio.shards import (
    ShardWriter,
    count_units,
    decode_rows,
    encode_rows,
    item_rows,
    make_plan,
    merge_rejects,
    run_local,
)
from slmscale.audio.sizing import plan_actors
from slmscale.audio.unit_encoder import EncoderSpec, UnitEncoder
from slmscale.errors import UserError
from slmscale.progress import Progress, format_seconds
from slmscale.units import META_FILE, sha256_file, write_json_atomic
from slmscale.units_digest import SHARD_DIGESTS, shard_digests

RESULT_SCHEMA = pa.schema(
    [
        ("shard", pa.int64()),
        ("utterance_id", pa.string()),
        ("dataset", pa.string()),
        ("split", pa.string()),
        ("source", pa.string()),
        ("error", pa.string()),
        ("units", pa.binary()),
        ("durations", pa.binary()),
        ("n_frames", pa.int64()),
        ("seconds", pa.float64()),
        ("precision", pa.string()),
    ]
)
ProgressFn = Callable[[float], None]


def _decode_batch(batch: pa.Table) -> pa.Table:
    """Ray task: decode a batch of inputs; audio travels as float32 bytes, errors as text."""
    rows = []
    for row, wave in decode_rows(batch.to_pylist(), {}):
        rows.append({**row, "audio": b"" if wave is None else wave.astype(np.float32).tobytes()})
    return pa.Table.from_pylist(rows)


class _SecondsCounter:
    """Ray actor (0 CPUs): audio-seconds encoded so far, summed over every encoder actor."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def add(self, seconds: float) -> None:
        self.seconds += seconds

    def get(self) -> float:
        return self.seconds


class _EncodeActor:
    """Ray actor: one `UnitEncoder` (model loaded once), fed batches of decoded audio."""

    def __init__(self, spec, centroids: np.ndarray, dedup: bool, threads: int, counter=None):
        import torch

        torch.set_num_threads(max(1, threads))
        self.encoder = spec.build(centroids, dedup)
        self.counter = counter

    def _report(self, seconds: float) -> None:
        self.counter.add.remote(seconds)

    def __call__(self, batch: pa.Table) -> pa.Table:
        decoded = []
        for row in batch.to_pylist():
            audio = row.pop("audio")
            wave = None if row["error"] else np.frombuffer(audio, dtype=np.float32).copy()
            decoded.append((row, wave))
        report = self._report if self.counter is not None else None
        return pa.Table.from_pylist(
            encode_rows(decoded, self.encoder, report), schema=RESULT_SCHEMA
        )


class _Poller:
    """Driver thread: forward the counter actor's total to `on_seconds` about every second."""

    def __init__(self, counter, on_seconds: ProgressFn, every: float = 1.0) -> None:
        self.counter, self.on_seconds, self.every = counter, on_seconds, every
        self.forwarded = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def poll(self) -> None:
        import ray

        try:
            now = ray.get(self.counter.get.remote(), timeout=10)
        except Exception:  # a slow poll is skipped; the next one catches up
            return
        if now > self.forwarded:
            self.on_seconds(now - self.forwarded)
            self.forwarded = now

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            self.poll()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=15)
        self.poll()  # what the last interval had not forwarded yet


def _run_ray(plan, spec, centroids, dedup, writer, on_seconds, on_result, sizing, *, batch_size):
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    from slmscale.console import quiet_ray_data

    quiet_ray_data()
    DataContext.get_current().enable_progress_bars = False
    counter = ray.remote(num_cpus=0)(_SecondsCounter).remote()
    rows = item_rows(plan, plan.pending())
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows) // 8, 1000)))
    ds = ds.map_batches(_decode_batch, batch_size=8, batch_format="pyarrow", num_cpus=0.5)
    extra = {"memory": sizing.memory_request} if sizing.memory_request else {}
    ds = ds.map_batches(
        _EncodeActor,
        fn_constructor_args=(spec, centroids, dedup, sizing.threads, counter),
        compute=ActorPoolStrategy(min_size=1, max_size=sizing.num_actors),
        batch_size=batch_size,
        batch_format="pyarrow",
        num_gpus=sizing.num_gpus,
        num_cpus=sizing.actor_cpus,
        **extra,
    )
    with _Poller(counter, on_seconds):
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            for result in batch.to_pylist():
                writer.add(result)
                on_result(result)


def _total_seconds(items) -> float | None:
    """Audio-seconds of the inputs, from file headers (threads: it is I/O); unknown ones (Parquet
    rows) are counted at the mean of the known ones.  None when nothing is known."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        known = [s for s in pool.map(probe_seconds, items) if s is not None]
    if not known:
        return None
    return sum(known) * len(items) / len(known)


def _split_summary(items) -> str:
    counts = Counter((it.dataset, it.split) for it in items)
    return ", ".join(f"{d}/{s} {n}" for (d, s), n in sorted(counts.items()))


def _sizing(engine, probe, spec, num_actors, num_gpus, batch_seconds):
    """Actors and batch seconds for this run (the Ray cluster's resources, or this machine)."""
    from slmscale.audio.sizing import available_memory

    fixed = batch_seconds is not None
    batch_seconds = spec.batch_seconds if batch_seconds is None else batch_seconds
    if engine == "local":
        on_gpu = probe.device.type == "cuda"
        return plan_actors(
            probe,
            cpus=2,
            gpus=1 if on_gpu else 0,
            available_bytes=available_memory(),
            num_actors=None,
            num_gpus=1 if on_gpu else 0,
            batch_seconds=batch_seconds,
            fixed_batch=fixed,
            min_batch_seconds=spec.window_seconds + 2 * spec.context_seconds,
        )
    import ray

    res, avail = ray.cluster_resources(), ray.available_resources()
    return plan_actors(
        probe,
        cpus=int(res.get("CPU", 1)),
        gpus=res.get("GPU", 0),
        available_bytes=avail.get("memory") or res.get("memory"),
        num_actors=num_actors,
        num_gpus=num_gpus,
        batch_seconds=batch_seconds,
        fixed_batch=fixed,
        min_batch_seconds=spec.window_seconds + 2 * spec.context_seconds,
    )


def tokenize(
    inputs: list[InputSpec | str],
    out_dir: str | Path,
    encoder_spec: EncoderSpec,
    kmeans_path: str | Path,
    *,
    trust_pickle: bool = False,
    dedup: bool = True,
    test_fraction: float = 0.01,
    shard_size: int = 1000,
    engine: str = "ray",
    num_actors: int | None = None,
    num_gpus: float | None = None,
    batch_size: int = 32,
    batch_seconds: float | None = None,
    encoder: UnitEncoder | None = None,
    on_progress: ProgressFn | None = None,
    log=None,
) -> dict:
    """Audio inputs -> units dataset at `out_dir`; returns a summary (counts, accounting, timing).

    Rerunning into the same `out_dir` skips finished shards.  `encoder` lets a caller reuse a
    built `UnitEncoder` with the local engine (tests, benchmarks).  `batch_seconds` None sizes the
    encoder batches (and actors) to memory; else it overrides `encoder_spec.batch_seconds`.
    `on_progress(seconds)` hears of every encoded stretch of audio; `log(line)` gets the plan
    lines (default: stderr)."""
    t0 = time.monotonic()
    log = log or (lambda line: print(f"tokenize: {line}", file=sys.stderr, flush=True))
    specs = [InputSpec.parse(s) if isinstance(s, str) else s for s in inputs]
    if not specs:
        raise UserError("tokenize: give at least one --input NAME[:SPLIT]=PATH")
    if not 0.0 <= test_fraction < 1.0:
        raise UserError(f"--test-fraction {test_fraction}: must be in [0, 1)")
    if engine not in ("ray", "local"):
        raise UserError(f"--engine {engine!r}: expected 'ray' or 'local'")
    kmeans_path = Path(kmeans_path).resolve()
    centroids = load_centroids(kmeans_path, trust_pickle)
    items = [it for spec in specs for it in find_inputs(spec, test_fraction)]
    probe = encoder.encoder if encoder is not None else encoder_spec.build(None).encoder
    if probe.dim != centroids.shape[1]:
        raise UserError(
            f"--kmeans {kmeans_path}: centroid dim {centroids.shape[1]} != encoder dim {probe.dim}"
        )
    meta = {
        "encoder": probe.kind,
        "encoder_id": probe.encoder_id,
        "model": encoder_spec.model,
        "layer": probe.layer,
        "frame_rate": probe.frame_rate,
        "sample_rate": SAMPLE_RATE,
        "kmeans_path": str(kmeans_path),
        "kmeans_sha256": sha256_file(kmeans_path),
        "kmeans_k": int(centroids.shape[0]),
        "n_units": int(centroids.shape[0]),
        "dedup": bool(dedup),
        "unigram_model": None,
        "unigram_sha256": None,
        "source_units": None,
    }
    identity = {
        **meta,
        "window_seconds": encoder_spec.window_seconds,
        "context_seconds": encoder_spec.context_seconds,
        "test_fraction": test_fraction,
    }
    identity.pop("kmeans_path")
    identity.pop("model")  # a spelling of the weights, which encoder_id names by content
    plan = make_plan(out_dir, items, identity, shard_size)
    writer = ShardWriter(plan)
    skipped = len(plan.done)
    pending = [it for s in plan.pending() for it in plan.shards[s]]
    log(f"{len(items)} inputs ({_split_summary(items)}); {len(pending)} to do")
    owns_ray = False
    if engine == "ray":
        import ray

        from slmscale.console import init_ray

        owns_ray = not ray.is_initialized()
        if owns_ray:
            init_ray(include_dashboard=False, log_to_driver=False)
    try:
        sizing = _sizing(engine, probe, encoder_spec, num_actors, num_gpus, batch_seconds)
        if engine == "ray" or sizing.batch_seconds != encoder_spec.batch_seconds:
            log(sizing.message)
        spec = replace(encoder_spec, batch_seconds=sizing.batch_seconds)
        _encode_all(
            plan,
            pending,
            spec,
            centroids,
            dedup,
            writer,
            encoder,
            sizing,
            engine,
            batch_size,
            on_progress,
        )
    finally:
        if owns_ray:
            import ray

            ray.shutdown()
    if plan.pending():
        raise RuntimeError(f"tokenize: shards {plan.pending()[:5]} were not completed")
    meta["precision"] = plan.precision or probe.precision
    return _finish(plan, meta, specs, test_fraction, shard_size, skipped, writer, t0)


def _encode_all(
    plan, pending, spec, centroids, dedup, writer, encoder, sizing, engine, batch_size, on_progress
) -> None:
    """Run the pending shards with a progress bar in audio-seconds (plus inputs and rejects)."""
    total = _total_seconds(pending)
    state = {"inputs": 0, "rejects": 0}
    with Progress(total, "tokenize", " audio", fmt=format_seconds) as progress:

        def on_seconds(step: float) -> None:
            progress.update(step)
            if on_progress is not None:
                on_progress(step)

        def on_result(res: dict) -> None:
            state["inputs"] += 1
            state["rejects"] += bool(res["error"])
            progress.update(
                0, extra=f"inputs {state['inputs']}/{len(pending)}, {state['rejects']} rejected"
            )

        if engine == "local":
            if encoder is None:
                encoder = spec.build(centroids, dedup)
            run_local(plan, encoder, writer, on_seconds, on_result)
        else:
            _run_ray(
                plan,
                spec,
                centroids,
                dedup,
                writer,
                on_seconds,
                on_result,
                sizing,
                batch_size=batch_size,
            )


def _finish(plan, meta, specs, test_fraction, shard_size, skipped, writer, t0) -> dict:
    rejects = merge_rejects(plan)
    counts = count_units(plan.out, len(plan.shards))
    n_rows = sum(c["utterances"] for d in counts.values() for c in d.values())
    meta.update(
        package_version=__version__,
        counts=counts,
        n_inputs=plan.n_inputs,
        n_rejects=rejects.num_rows,
        n_utterances=n_rows,
        n_shards=len(plan.shards),
        shard_size=shard_size,
        test_fraction=test_fraction,
        inputs=[asdict(s) for s in specs],
    )
    meta[SHARD_DIGESTS] = shard_digests(plan.out)  # the dataset's identity (units.dataset_digest)
    write_json_atomic(plan.out / META_FILE, meta)
    seconds = sum(c["seconds"] for d in counts.values() for c in d.values())
    return {
        "out": str(plan.out),
        "meta": meta,
        "n_inputs": plan.n_inputs,
        "n_rows": n_rows,
        "n_rejects": rejects.num_rows,
        "shards_total": len(plan.shards),
        "shards_skipped": skipped,
        "shards_written": writer.written,
        "audio_seconds": seconds,
        "wall_s": time.monotonic() - t0,
        "cpu_count": os.cpu_count(),
    }
