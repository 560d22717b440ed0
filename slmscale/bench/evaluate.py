"""eval: pairs scored per second, batched (the scorer's defaults) vs one pair per batch.

sBLIMP-like pairs (~40 units per utterance) through `score_sequences`, the path
`slmscale eval` runs, on a randomly initialised model (speed does not depend on the weights).
"""

from __future__ import annotations

from slmscale.bench.context import Context
from slmscale.bench.results import Figure
from slmscale.evaluate.speed import measure_pairs_per_second
from slmscale.model import build_model

SECTION = "eval"
N_UNITS = 500


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
