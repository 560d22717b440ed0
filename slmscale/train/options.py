"""What the trainer takes besides the trial (runtime options) and what it returns.

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
    # None / "auto": CUDA when torch sees it, else CPU; "cuda": CUDA or a one-line error (a
    # trial that asked for GPUs never trains on the CPU by surprise); "cpu" (train.device).
    device: str | None = None
    # All periodic test-loss evaluations together cost at most this share of the trial's
    # training FLOPs (a fixed sample of the test split); the final one scores the whole split.
    periodic_eval_cost: float = DEFAULT_PERIODIC_EVAL_COST


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
