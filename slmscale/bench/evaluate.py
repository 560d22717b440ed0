"""eval: pairs scored per second, batched (the scorer's defaults) vs one pair per batch.

Synthetic sBLIMP-like pairs (~40 units per utterance, lengths spread +-25% as real utterances
vary) through `score_sequences`, the path `slmscale eval` runs, on a randomly initialised model
(speed does not depend on the weights); a warm-up batch runs first so one-time costs (kernel
selection, allocator growth) are not counted.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from slmscale.bench.context import N_UNITS, Context, sync
from slmscale.bench.results import Figure
from slmscale.evaluate.scoring import DEFAULT_BATCH_SIZE, DEFAULT_BATCH_TOKENS, score_sequences
from slmscale.model import build_model, special_token_ids

SECTION = "eval"


def measure_pairs_per_second(
    model,
    *,
    n_units: int,
    n_pairs: int = 128,
    mean_units: int = 40,
    device: str | torch.device = "cpu",
    max_batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict:
    """{"pairs_per_sec", "units_per_sec", "seconds", "n_pairs", "mean_units", "device"}.

    sBLIMP utterances are ~40 units at 25 Hz after dedup; StoryCloze stories are ~500.
    """
    device = torch.device(device)
    rng = np.random.default_rng(0)
    lo, hi = max(1, int(mean_units * 0.75)), max(2, int(mean_units * 1.25) + 1)
    seqs = [rng.integers(0, n_units, rng.integers(lo, hi)).tolist() for _ in range(2 * n_pairs)]
    special = special_token_ids(n_units)
    kwargs = dict(
        bos_id=special["bos"],
        pad_id=special["pad"],
        device=device,
        max_batch_tokens=DEFAULT_BATCH_TOKENS,
        max_batch_size=max_batch_size,
    )
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        score_sequences(model, seqs[:max_batch_size], **kwargs)  # warm-up
        sync(device)
        start = time.perf_counter()
        score_sequences(model, seqs, **kwargs)
        sync(device)
        seconds = time.perf_counter() - start
    finally:
        model.train(was_training)
    n_tokens = sum(len(s) + 1 for s in seqs)
    return {
        "pairs_per_sec": n_pairs / seconds,
        "units_per_sec": n_tokens / seconds,
        "seconds": seconds,
        "n_pairs": n_pairs,
        "mean_units": mean_units,
        "device": str(device),
    }


def measure_eval(ctx: Context) -> list[Figure]:
    s = ctx.scale
    device = ctx.gpu_device or "cpu"
    ctx.step(f"eval: pairs/s ({s.eval_shape.name}, {device})")
    model = build_model(s.eval_shape, N_UNITS).to(device)
    batched = measure_pairs_per_second(model, n_units=N_UNITS, n_pairs=s.eval_pairs, device=device)
    one = measure_pairs_per_second(
        model, n_units=N_UNITS, n_pairs=max(2, s.eval_pairs // 4), device=device, max_batch_size=2
    )
    return [
        Figure(
            SECTION,
            f"pairs/s ({s.eval_shape.name}, ~40 units, {device})",
            batched["pairs_per_sec"],
            "pairs/s",
            one["pairs_per_sec"],
            "one pair per batch",
            extra={"batched": batched, "one_pair": one},
        )
    ]
