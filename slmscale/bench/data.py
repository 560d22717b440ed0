"""data: packed-batch tokens/s read from Parquet units vs the tokens/s training consumes.

A units dataset of a few million random units (K = 500, utterances of 100-300 units, 1% test)
is written to a temporary directory; the loader figure is end to end, as a trial reads it:
`load_trial_data` (Parquet -> pool -> stream) then every training batch of context windows
padded into (input_ids, labels) tensors, exactly what `slmscale.train.loop` feeds the model.
The baseline is the training step of the paper's 20M model at context 2050 on this machine's
device (the same timing function the train section uses).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from slmscale import units as units_io
from slmscale.bench.context import Context, profile_top
from slmscale.bench.results import Figure, judge
from slmscale.bench.steps import cached_step
from slmscale.corpus import load_trial_data, pad_batch
from slmscale.model import special_token_ids
from slmscale.train.bench import StepTiming

SECTION = "data"
N_UNITS = 500


def write_random_units(root: Path, tokens: int, seed: int = 0) -> Path:
    """A units dataset of about `tokens` units (train) plus a 1% test split."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(100, 301, size=max(2, int(tokens * 1.01) // 200))
    values = rng.integers(0, N_UNITS, size=int(lengths.sum())).astype(np.uint16)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    n = len(lengths)
    split = np.where(np.arange(n) < max(1, n // 100), "test", "train")
    units = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.uint16()))
    table = pa.table(
        {
            "utterance_id": [f"u{i:07d}" for i in range(n)],
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
    units_io.write_table_atomic(table, root / "shard-00000.parquet")
    meta = {"encoder": "bench", "encoder_id": "bench-random", "layer": None, "frame_rate": 25}
    meta |= {"sample_rate": 16000, "kmeans_sha256": "bench", "n_units": N_UNITS, "dedup": True}
    units_io.write_json_atomic(root / units_io.META_FILE, meta)
    return root


def read_all_batches(root: Path, tokens: int, context: int, batch: int) -> dict:
    """Time one pass of the loader over `tokens` training tokens; tokens/s end to end."""
    t0 = time.perf_counter()
    cfg = {"data": [{"path": str(root)}], "n_units": N_UNITS, "unique_tokens": tokens}
    cfg |= {"tokens": tokens, "context": context, "seed": 0, "eval": {}}
    data = load_trial_data(cfg)
    t_loaded = time.perf_counter()
    pad = special_token_ids(N_UNITS)["pad"]
    stream, produced = data.stream, 0
    for first in range(0, stream.n_windows, batch):
        windows = [stream.window(w) for w in range(first, min(first + batch, stream.n_windows))]
        inputs, labels = pad_batch(windows, pad)
        x, y = torch.from_numpy(inputs), torch.from_numpy(labels)
        produced += sum(len(w) for w in windows)
    t_end = time.perf_counter()
    assert produced == tokens and x.shape[1] <= context and y.shape == x.shape
    return {
        "tokens": produced,
        "tokens_per_sec": produced / (t_end - t0),
        "load_seconds": t_loaded - t0,
        "steady_tokens_per_sec": produced / max(t_end - t_loaded, 1e-9),
    }


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
    return [fig]


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
