"""Stage 1 at corpus scale: the Ray Data edge around the pure `UnitEncoder`.

    inputs (paths / rows) -> decode tasks (CPU: soundfile, downmix, resample)
        -> encoder actor pool (GPU actors when there are GPUs; k-means on the same device)
        -> driver: rows collected per shard, a shard written the moment it is complete

Only references to inputs are in the driver; audio is decoded in tasks and streamed through the
actors, so the corpus is never held in memory.  `engine="local"` runs the same work in this
process without Ray (the GPU benchmark machine has no Ray).  `tokenize()` is the Python API;
`slmscale tokenize` is a thin CLI over it.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa

from slmscale import __version__
from slmscale.audio.io import SAMPLE_RATE, InputSpec, find_inputs
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
from slmscale.audio.unit_encoder import EncoderSpec, UnitEncoder
from slmscale.errors import UserError
from slmscale.progress import Progress
from slmscale.units import META_FILE, sha256_file, write_json_atomic

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
    ]
)


def _decode_batch(batch: pa.Table) -> pa.Table:
    """Ray task: decode a batch of inputs; audio travels as float32 bytes, errors as text."""
    rows = []
    for row, wave in decode_rows(batch.to_pylist(), {}):
        rows.append({**row, "audio": b"" if wave is None else wave.astype(np.float32).tobytes()})
    return pa.Table.from_pylist(rows)


class _EncodeActor:
    """Ray actor: one `UnitEncoder` (model loaded once), fed batches of decoded audio."""

    def __init__(self, spec: EncoderSpec, centroids: np.ndarray, dedup: bool, threads: int):
        import torch

        torch.set_num_threads(max(1, threads))
        self.encoder = spec.build(centroids, dedup)

    def __call__(self, batch: pa.Table) -> pa.Table:
        decoded = []
        for row in batch.to_pylist():
            audio = row.pop("audio")
            wave = None if row["error"] else np.frombuffer(audio, dtype=np.float32).copy()
            decoded.append((row, wave))
        return pa.Table.from_pylist(encode_rows(decoded, self.encoder), schema=RESULT_SCHEMA)


def _run_ray(plan, spec, centroids, dedup, writer, progress, *, num_actors, num_gpus, batch_size):
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    owns_ray = not ray.is_initialized()
    if owns_ray:
        ray.init(include_dashboard=False, log_to_driver=False)
    try:
        DataContext.get_current().enable_progress_bars = False
        resources = ray.cluster_resources()
        if num_gpus is None:
            num_gpus = 1 if resources.get("GPU", 0) > 0 else 0
        cpus = int(resources.get("CPU", 1))
        if num_actors is None:
            num_actors = max(1, int(resources.get("GPU", 0))) if num_gpus else max(1, cpus // 2)
        # Fractional CPUs: a pool that takes every CPU starves the decode tasks (platform.md).
        actor_cpus = 0.5 if num_gpus else max(0.5, cpus / num_actors - 0.5)
        rows = item_rows(plan, plan.pending())
        ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows) // 8, 1000)))
        ds = ds.map_batches(_decode_batch, batch_size=8, batch_format="pyarrow", num_cpus=0.5)
        ds = ds.map_batches(
            _EncodeActor,
            fn_constructor_args=(spec, centroids, dedup, max(1, int(actor_cpus + 0.5))),
            compute=ActorPoolStrategy(min_size=1, max_size=num_actors),
            batch_size=batch_size,
            batch_format="pyarrow",
            num_gpus=num_gpus,
            num_cpus=actor_cpus,
        )
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            for result in batch.to_pylist():
                writer.add(result)
                progress.update(1)
    finally:
        if owns_ray:
            ray.shutdown()


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
    encoder: UnitEncoder | None = None,
) -> dict:
    """Audio inputs -> units dataset at `out_dir`; returns a summary (counts, accounting, timing).

    Rerunning into the same `out_dir` skips finished shards.  `encoder` lets a caller reuse a
    built `UnitEncoder` with the local engine (tests, benchmarks)."""
    t0 = time.monotonic()
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
    if encoder is None and engine == "local":
        encoder = encoder_spec.build(centroids, dedup)
    probe = encoder.encoder if encoder is not None else encoder_spec.build(None).encoder
    if probe.dim != centroids.shape[1]:
        raise UserError(
            f"--kmeans {kmeans_path}: centroid dim {centroids.shape[1]} != encoder dim {probe.dim}"
        )
    meta = {
        "encoder": probe.kind,
        "encoder_id": probe.encoder_id,
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
    plan = make_plan(out_dir, items, identity, shard_size)
    writer = ShardWriter(plan)
    skipped = len(plan.done)
    progress = Progress(sum(len(plan.shards[s]) for s in plan.pending()), "tokenize", " inputs")
    with progress:
        if engine == "local":
            run_local(plan, encoder, writer, progress)
        else:
            _run_ray(
                plan,
                encoder_spec,
                centroids,
                dedup,
                writer,
                progress,
                num_actors=num_actors,
                num_gpus=num_gpus,
                batch_size=batch_size,
            )
    if plan.pending():
        raise RuntimeError(f"tokenize: shards {plan.pending()[:5]} were not completed")
    return _finish(plan, meta, specs, test_fraction, shard_size, skipped, writer, t0)


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
