"""Throughput, MFU and memory estimates, computed in one place (pure core).

MFU = achieved model FLOP/s / peak FLOP/s, with model FLOPs per token = 6N + attention
(slmscale.model.flops_per_token with the context), the accounting of PaLM / nanoGPT.  Peak FLOP/s
are the vendors' dense bf16 tensor-core numbers; MFU is only reported for a GPU in the table.
"""

from __future__ import annotations

import math

from slmscale.model import ModelShape, flops_per_token, total_params, vocab_size

# Dense bf16 peak FLOP/s per GPU (no sparsity), matched by substring of the device name.
PEAK_BF16_FLOPS: dict[str, float] = {
    "H200": 989e12,
    "H100": 989e12,
    "GH200": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10G": 70e12,
    "A10": 125e12,
    "RTX 4090": 165e12,
    "V100": 125e12,
}


def peak_flops(device_name: str | None) -> float | None:
    """Peak bf16 FLOP/s of a GPU by name (e.g. 'NVIDIA H200'), None when unknown or CPU."""
    if not device_name:
        return None
    for key in sorted(PEAK_BF16_FLOPS, key=len, reverse=True):
        if key in device_name:
            return PEAK_BF16_FLOPS[key]
    return None


def mfu(
    tokens_per_sec: float, shape: ModelShape, context: int, peak: float | None, n_devices: int = 1
) -> float | None:
    """Model FLOPs utilisation of `n_devices` GPUs running at `tokens_per_sec` in total."""
    if not peak or tokens_per_sec <= 0:
        return None
    return tokens_per_sec * flops_per_token(shape, context) / (peak * n_devices)


def training_memory_bytes(
    shape: ModelShape, n_units: int, micro_batch: int, context: int, bf16: bool
) -> float:
    """A deliberately rough upper estimate of training memory on one device.

    fp32 weights + grads + two Adam moments (16 bytes per parameter), plus activations kept for
    the backward pass: about 34 x tokens x dim bytes per layer in bf16 (Korthikanti et al. 2022,
    no recomputation, flash/SDPA attention so no context^2 term), doubled in fp32, plus the
    logits and their gradient in fp32.
    """
    params = total_params(shape, vocab_size(n_units))
    tokens = micro_batch * context
    act_per_layer = 34.0 * tokens * shape.dim * (1.0 if bf16 else 2.0)
    logits = 3.0 * 4.0 * tokens * vocab_size(n_units)
    return 16.0 * params + shape.n_layers * act_per_layer + logits


def largest_fitting_micro_batch(
    shape: ModelShape,
    n_units: int,
    batch_per_worker: int,
    context: int,
    memory_gb: float,
    bf16: bool = True,
    headroom: float = 0.9,
) -> int | None:
    """The largest micro-batch (a divisor of the per-worker batch) that fits, None if none does."""
    budget = memory_gb * 2**30 * headroom
    for mb in sorted(_divisors(batch_per_worker), reverse=True):
        if training_memory_bytes(shape, n_units, mb, context, bf16) <= budget:
            return mb
    return None


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))
