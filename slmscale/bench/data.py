"""data: the loader's tokens/s vs training's, and seconds from trial start to first batch.

The loader figure is end to end, as a trial reads a units dataset (here of random units): the
token store, its prefix and stream (`open_data`; the store is built on first use), then every
batch of context windows padded into (input_ids, labels) tensors, exactly what
`slmscale.train.loop` feeds the model.  The baseline is the training step of the paper's 20M
model at context 2050 on this machine's device (the same timing the train section uses).

Start to first batch, store ready (built by `slmscale tokenize` or an earlier trial), on a
corpus of `data_tokens` and of 64 x that with U_D = the whole corpus: the ratio should be near
1, since a ready store means no shard is read.  Beside it, the trial that has to build the store
(what every trial start cost before the store: a scan of every shard plus a pool write).
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from slmscale import units as units_io
from slmscale.bench.context import N_UNITS, Context, profile_top
from slmscale.bench.results import Figure, judge
from slmscale.bench.steps import StepTiming, cached_step
from slmscale.corpus import open_data, pad_batch
from slmscale.model import special_token_ids
from slmscale.units_digest import SHARD_DIGESTS, shard_digests

SECTION = "data"


def write_random_units(root: Path, tokens: int, seed: int = 0, shard_tokens: int = 1 << 24) -> Path:
    """A units dataset of about `tokens` units (train) plus a 1% test split, in shards of
    about `shard_tokens` units (so a large one never sits in memory whole)."""
    n_shards = max(1, math.ceil(tokens / shard_tokens))
    for i in range(n_shards):
        part = tokens // n_shards + (1 if i < tokens % n_shards else 0)
        _write_shard(root / f"shard-{i:05d}.parquet", part, seed + i)
    meta = {"encoder": "bench", "encoder_id": "bench-random", "layer": None, "frame_rate": 25}
    meta |= {"sample_rate": 16000, "kmeans_sha256": "bench", "n_units": N_UNITS, "dedup": True}
    meta[SHARD_DIGESTS] = shard_digests(root)  # as `slmscale tokenize` records them
    units_io.write_json_atomic(root / units_io.META_FILE, meta)
    return root


def _write_shard(path: Path, tokens: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(100, 301, size=max(2, int(tokens * 1.01) // 200))
    values = rng.integers(0, N_UNITS, size=int(lengths.sum())).astype(np.uint16)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    n = len(lengths)
    split = np.where(np.arange(n) < max(1, n // 100), "test", "train")
    prefix = path.stem
    units = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.uint16()))
    table = pa.table(
        {
            "utterance_id": [f"{prefix}-u{i:07d}" for i in range(n)],
            "dataset": ["bench"] * n,
            "split": split.tolist(),
            "units": units,
            "durations": pa.ListArray.from_arrays(
                pa.array(offsets), pa.array(np.ones_like(values))
            ),
            "n_frames": pa.array(lengths, pa.int32()),
            "seconds": pa.array(lengths / 25.0, pa.float32()),
            "source": ["bench://random"] * n,
        },
        schema=units_io.UNITS_SCHEMA,
    )
    units_io.write_table_atomic(table, path)


def _open(root: Path, unique: int, tokens: int, context: int):
    """A trial's data as the training loop opens it (slmscale.corpus.open_data)."""
    from slmscale.trial import DataSource

    return open_data(
        [DataSource.at(str(root))],
        n_units=N_UNITS,
        seed=0,
        unique_tokens=unique,
        tokens=tokens,
        context=context,
        cache_dir=root / "_token_stores",
    )


PAD = special_token_ids(N_UNITS)["pad"]


def _batch(stream, first: int, batch: int) -> tuple[list, torch.Tensor, torch.Tensor]:
    """Windows `first`.. of the stream padded into (input_ids, labels), as the trainer feeds them."""
    windows = [stream.window(w) for w in range(first, min(first + batch, stream.n_windows))]
    inputs, labels = pad_batch(windows, PAD)
    return windows, torch.from_numpy(inputs), torch.from_numpy(labels)


def read_all_batches(root: Path, tokens: int, context: int, batch: int) -> dict:
    """Time one pass of the loader over `tokens` training tokens; tokens/s end to end."""
    t0 = time.perf_counter()
    stream = _open(root, tokens, tokens, context).stream
    t_loaded = time.perf_counter()
    produced = 0
    for first in range(0, stream.n_windows, batch):
        windows, x, y = _batch(stream, first, batch)
        produced += sum(len(w) for w in windows)
    t_end = time.perf_counter()
    assert produced == tokens and x.shape[1] <= context and y.shape == x.shape
    return {
        "tokens": produced,
        "tokens_per_sec": produced / (t_end - t0),
        "load_seconds": t_loaded - t0,
        "steady_tokens_per_sec": produced / max(t_end - t_loaded, 1e-9),
    }


LARGE_FACTOR = 64  # the large corpus of the start-to-first-batch row: 64 x data_tokens (256M)


def first_batch_seconds(root: Path, unique: int, context: int, batch: int) -> float:
    """A trial start as the training loop does it: its data, then its first padded batch."""
    t0 = time.perf_counter()
    windows, x, y = _batch(_open(root, unique, unique, context).stream, 0, batch)
    assert x.shape == y.shape and x.shape[0] == len(windows)
    return time.perf_counter() - t0


def start_to_first_batch(root: Path, context: int, batch: int, repeats: int = 3) -> dict:
    """Seconds from trial start to first batch: the first trial (it builds the token store)
    and then, store ready, the best of `repeats` starts; U_D = every training token."""
    from slmscale.tokenstore import open_store

    build = first_batch_seconds(root, 1, context, batch)
    store = open_store([{"path": str(root)}], N_UNITS, 0, root / "_token_stores")
    unique = store.n_tokens
    ready = min(first_batch_seconds(root, unique, context, batch) for _ in range(repeats))
    return {"corpus_tokens": unique, "ready_seconds": ready, "build_seconds": build}


def _m(tokens: float) -> str:
    return f"{tokens / 1e6:.3g}M"


def _start_figures(ctx: Context, tmp: Path) -> list[Figure]:
    s = ctx.scale
    runs = {}
    for label, tokens in (("small", s.data_tokens), ("large", LARGE_FACTOR * s.data_tokens)):
        ctx.step(f"data: start to first batch, {_m(tokens)}-token corpus")
        root = write_random_units(tmp / f"start-{label}", tokens, seed=1)
        runs[label] = start_to_first_batch(root, s.consume_context, s.data_batch)
        shutil.rmtree(root, ignore_errors=True)
    small, large = runs["small"], runs["large"]
    size = f"{_m(large['corpus_tokens'])} vs {_m(small['corpus_tokens'])} tokens"

    def row(name: str, key: str, **kw) -> Figure:
        base = f"same at {_m(small['corpus_tokens'])} corpus tokens"
        extra = {"small": small, "large": large}
        return Figure(
            SECTION, f"{name} ({size})", large[key], "s", small[key], base, extra=extra, **kw
        )

    ready = row("trial start to first batch, token store ready", "ready_seconds")
    # The target is absolute: both figures are milliseconds, so their ratio mostly measures
    # noise and the one step that grows with U_D (shuffling U_D / context window starts).
    judge(ready, "value", "<=", 1.0)
    ready.add_note("ratio near 1 expected: no shard is read once the store is ready")
    build = row(
        "first trial start to first batch, building the store",
        "build_seconds",
        note="once per (data, seed); before the store every trial start paid a full shard scan",
    )
    return [ready, build]


def measure_data(ctx: Context) -> list[Figure]:
    s = ctx.scale
    device = ctx.gpu_device or "cpu"
    ctx.step("data: loader over Parquet units")
    with tempfile.TemporaryDirectory(prefix="slmscale-bench-units-") as tmp:
        root = write_random_units(Path(tmp), s.data_tokens)
        total = _train_tokens(root)
        loader = read_all_batches(root, total, s.consume_context, s.data_batch)
        ctx.step(f"data: training consumption ({s.consume_shape.name}, {device})")
        consume = _consumption(ctx)
        fig = Figure(
            SECTION,
            f"loader tokens/s (batch {s.data_batch} x {s.consume_context}, from Parquet)",
            loader["tokens_per_sec"],
            "tok/s",
            consume.tokens_per_sec,
            f"training {s.consume_shape.name} on {device}",
            extra=loader | {"consumption": consume.to_dict()},
        )
        judge(fig, "ratio", ">=", 10.0)
        if fig.met is False:
            fig.add_note(
                profile_top(read_all_batches, root, total, s.consume_context, s.data_batch)
            )
        figures = [fig, *_start_figures(ctx, Path(tmp))]
    return figures


def _train_tokens(root: Path) -> int:
    """Training tokens of the dataset as the trainer packs them: BOS units EOS per utterance."""
    t = units_io.read_units(root, splits=["train"], columns=["units", "split"])
    return int(pc.sum(pc.list_value_length(t["units"])).as_py()) + 2 * t.num_rows


def _consumption(ctx: Context) -> StepTiming:
    s = ctx.scale
    if ctx.gpu_device:
        from slmscale.bench.train import gpu_step

        return gpu_step(ctx, s.consume_shape)[0]
    args = (s.consume_shape, s.consume_context, s.consume_batch, s.consume_steps, "cpu")
    return cached_step(*args)[0]
