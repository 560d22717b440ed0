"""What the trainer takes besides the trial (runtime options, test faults) and what it returns.

Pure core.  RuntimeOptions say how to train, never what: none of them changes a trial's key or its
final result (tests hold the loss curve to 1e-6 across micro-batches and worker counts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CHECKPOINT_MINUTES = 20.0
DEFAULT_PERIODIC_EVAL_COST = 0.02


@dataclass(frozen=True)
class RuntimeOptions:
    """How (not what) to train: none of this changes the trial's identity or its final result."""

    # Checkpoint every this many steps when set; otherwise every `checkpoint_every_minutes` of
    # wall-clock time (decided at logging intervals).
    checkpoint_every_steps: int | None = None
    checkpoint_every_minutes: float = DEFAULT_CHECKPOINT_MINUTES
    log_every_steps: int = 10
    deterministic: bool = False
    compile: bool | None = None  # None: on for CUDA, off on CPU (the CPU path stays eager)
    micro_batch_size: int | None = None  # sequences per forward pass on one worker
    activation_checkpointing: bool = False
    device: str | None = None  # None: CUDA when torch sees it, else CPU
    # All periodic test-loss evaluations together cost at most this share of the trial's
    # training FLOPs (a fixed sample of the test split); the final one scores the whole split.
    periodic_eval_cost: float = DEFAULT_PERIODIC_EVAL_COST


@dataclass(frozen=True)
class FaultInjection:
    """Test-only hooks: a NaN loss at `nan_at_step`, an exception before `raise_at_step`, an
    out-of-memory error for every micro-batch above `oom_above_micro_batch` (without activation
    checkpointing) from step `oom_from_step` on."""

    nan_at_step: int | None = None
    raise_at_step: int | None = None
    oom_above_micro_batch: int | None = None
    oom_from_step: int = 0
    # SIGKILL this process before step `kill_at_step`, once: only while `kill_marker` (a file
    # path) does not exist; it is created first (a preempted node, seen from the worker).
    kill_at_step: int | None = None
    kill_marker: str | None = None


class InjectedFault(RuntimeError):
    """Raised by FaultInjection.raise_at_step (simulates a worker dying mid-trial)."""


@dataclass
class TrialResult:
    status: str  # FINISHED | FAILED
    reason: str | None
    steps: int
    tokens_trained: int
    unique_tokens_seen: int
    test_loss_final: float | None
    train_loss: float | None
    tokens_per_sec: float
    mfu: float | None
    downstream: dict = field(default_factory=dict)
    eval_details: dict | None = None
    model_dir: Path | None = None
    micro_batch: int = 0  # the micro-batch the trial ended with
    oom_retries: int = 0
    periodic_eval_tokens: int = 0  # test tokens scored by all periodic evaluations
    periodic_eval_flops_fraction: float = 0.0  # their forward FLOPs / the training FLOPs
