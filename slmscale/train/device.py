"""Which device a trial trains on, and how a run names it (pure core).

A trial that asked for GPUs must get one: Ray can grant a GPU that torch cannot see (no driver,
a CPU-only torch build, CUDA_VISIBLE_DEVICES emptied), and a trial that then quietly trains on
the CPU costs a day to notice.  So `cuda` means CUDA or a one-line error, and the CPU is used for
a GPU trial only when the spec opts in (`train.allow_cpu_fallback`, which asks for `auto`).
"""

from __future__ import annotations

import torch

from slmscale.errors import UserError


class DeviceUnavailable(UserError):
    """The trial asked for a CUDA device and torch sees none (one line: what, why, the fix)."""


def resolve_device(requested: str | None) -> torch.device:
    """`cuda`: CUDA or DeviceUnavailable; `cpu`: the CPU; None / `auto`: CUDA when present."""
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable(
                "the trial asked for a GPU (resources.gpus_per_worker > 0) but torch sees no CUDA "
                f"device (torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); "
                "fix the node's driver/torch build, or set train.allow_cpu_fallback: true to train "
                "on the CPU"
            )
        return torch.device("cuda", torch.cuda.current_device())
    if requested in (None, "auto") and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def describe_device(device: torch.device, world_size: int = 1) -> str:
    """`cpu`, or the GPU model and how many: `NVIDIA H100 80GB HBM3 x 8` (the run's param)."""
    if device.type != "cuda":
        return "cpu" if world_size == 1 else f"cpu x {world_size}"
    return f"{torch.cuda.get_device_name(device)} x {world_size}"
