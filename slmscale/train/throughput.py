"""Throughput and MFU, computed in one place (pure core).

MFU = achieved model FLOP/s / peak FLOP/s.  Model FLOPs per token are those of
slmscale.model.flops_per_token with the context: 6N + 12·L·T·d, the convention of nanoGPT's
`estimate_mfu`, PaLM (appendix B) and torchtitan (attention scores and their weighted sum, forward
and backward, without the causal halving the kernels do not realise either).  Peak FLOP/s are the
vendors' dense bf16 tensor-core numbers (no sparsity), told apart by the device name torch reports;
MFU is only reported for a GPU in the table.

Training memory lives in slmscale.train.memory; `largest_fitting_micro_batch` below is its
shortcut for the bench (the largest micro-batch that fits without activation checkpointing).
"""

from __future__ import annotations

from slmscale.model import ModelShape, flops_per_token
from slmscale.train.memory import choose_micro_batch

# (substrings that must all appear in torch.cuda.get_device_name(), dense bf16 FLOP/s), first
# match wins: the variants of a family come before the family.  Names as torch reports them,
# e.g. "NVIDIA H100 80GB HBM3" (SXM), "NVIDIA H100 PCIe", "NVIDIA H100 NVL", "NVIDIA H200",
# "NVIDIA A100-SXM4-80GB", "NVIDIA A10G", "NVIDIA L4".
PEAK_BF16_TABLE: list[tuple[tuple[str, ...], float, str]] = [
    (("H100", "PCIe"), 756e12, "H100 PCIe"),
    (("H100", "NVL"), 835e12, "H100 NVL"),
    (("H200", "NVL"), 835e12, "H200 NVL"),
    (("GH200",), 989e12, "GH200"),
    (("H200",), 989e12, "H200 SXM"),
    (("H100",), 989e12, "H100 SXM"),
    (("A100",), 312e12, "A100 (SXM and PCIe)"),
    (("A10G",), 70e12, "A10G (AWS g5; the A10 is 125)"),
    (("A10",), 125e12, "A10"),
    (("L40S",), 362e12, "L40S"),
    (("L4",), 121e12, "L4"),
    (("V100",), 125e12, "V100 (fp16; no bf16)"),
]


def peak_flops(device_name: str | None) -> float | None:
    """Peak dense bf16 FLOP/s of a GPU by name (e.g. 'NVIDIA H100 PCIe'), None when unknown."""
    if not device_name:
        return None
    for needles, flops, _ in PEAK_BF16_TABLE:
        if all(n in device_name for n in needles):
            return flops
    return None


def mfu(
    tokens_per_sec: float, shape: ModelShape, context: int, peak: float | None, n_devices: int = 1
) -> float | None:
    """Model FLOPs utilisation of `n_devices` GPUs running at `tokens_per_sec` in total."""
    if not peak or tokens_per_sec <= 0:
        return None
    return tokens_per_sec * flops_per_token(shape, context) / (peak * n_devices)


def largest_fitting_micro_batch(
    shape: ModelShape,
    n_units: int,
    batch_per_worker: int,
    context: int,
    memory_gb: float,
    bf16: bool = True,
) -> int | None:
    """The largest micro-batch (a divisor of the per-worker batch) that fits without activation
    checkpointing, None if none does."""
    choice = choose_micro_batch(
        shape, n_units, batch_per_worker, context, memory_gb, bf16=bf16, checkpointing=False
    )
    return choice.micro_batch if choice else None
