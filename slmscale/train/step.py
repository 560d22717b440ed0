"""One optimizer step: the step's windows in micro-batches, gradients summed over ranks, OOM recovery.

The global batch is fixed by the trial (`batch_size` windows per step) and split over ranks
round-robin; each rank splits its share into micro-batches (gradient accumulation).  The loss is
the summed token NLL of the whole global batch divided by the global number of target tokens,
which every rank computes from the window lengths alone, so the gradient (summed over ranks) is
the same whatever the worker count and micro-batch: only the order of additions changes.

Gradients are all-reduced explicitly after the micro-batch loop rather than by DDP hooks during
the last backward: the ranks first agree whether any of them ran out of memory, and if one did
they all drop the step's gradients, halve the micro-batch and run the step again (with micro-batch
1 still too large, activation checkpointing is switched on; after that the error stands).  With
DDP's hooks a rank that fails mid-backward leaves the others waiting in a collective.  The cost
is the overlap of that one all-reduce with the last micro-batch's backward: with several
micro-batches per step, a small share.

Host synchronisation: on one rank, none happens here: the step's loss stays on the device (the
trainer reads it at logging intervals), and the next step's batches are built on the host and
copied from pinned memory without blocking while this step runs on the GPU.  With several ranks
there is one per step: the ranks agree whether any ran out of memory (a one-element all-reduce
read on the host) before they reduce gradients, the price of recovering from an OOM without a
hang.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from slmscale.corpus import IGNORE_INDEX, pad_batch
from slmscale.model import special_token_ids

BUCKET_BYTES = 64 * 2**20  # gradients all-reduced in flat buckets of about this size


@dataclass
class StepBatch:
    """One step's micro-batches on the device, with the global accounting of the step."""

    step: int
    micro_batch: int
    chunks: list[tuple[torch.Tensor, torch.Tensor]]  # (inputs, labels) per micro-batch
    n_targets: int  # target tokens in the whole global batch (all ranks)
    tokens: int  # stream tokens the step consumes (all ranks)


def prepare_step(run, step: int, micro_batch: int) -> StepBatch:
    """Build step `step`'s micro-batches for this rank and start their copy to the device."""
    stream, batch = run.data.stream, run.trial.batch_size
    first, last = step * batch, min((step + 1) * batch, stream.n_windows)
    starts = np.arange(first, last, dtype=np.int64) * stream.context
    lengths = np.minimum(stream.context, stream.tokens - starts)
    n_targets = int(np.maximum(lengths - 1, 0).sum())
    mine = [stream.window(w) for w in range(first + run.rank, last, run.world_size)]
    pad = special_token_ids(run.data.n_units)["pad"]
    chunks = []
    for i in range(0, len(mine), micro_batch):
        inputs, labels = pad_batch(mine[i : i + micro_batch], pad)
        chunks.append((_to_device(inputs, run.device), _to_device(labels, run.device)))
    tokens = int(lengths.sum())
    return StepBatch(step, micro_batch, chunks, n_targets, tokens)


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    t = torch.from_numpy(array)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t


def nll_sum(run, model, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token NLL of one micro-batch (fp32 logits, padding ignored)."""
    with run.autocast():
        logits = model(input_ids=inputs).logits
    return F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.size(-1)),
        labels[:, 1:].reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


def _forward_backward(run, batch: StepBatch) -> torch.Tensor:
    loss_total = torch.zeros((), dtype=torch.float32, device=run.device)
    for inputs, labels in batch.chunks:
        loss_sum = nll_sum(run, run.forward_model, inputs, labels)
        (loss_sum / max(batch.n_targets, 1)).backward()
        loss_total += loss_sum.detach()
    return loss_total


def _any_rank(run, flag: bool) -> bool:
    if run.world_size == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=run.device)
    torch.distributed.all_reduce(t)
    return bool(t.item() > 0)


def all_reduce_gradients(params: list[torch.nn.Parameter]) -> None:
    """Sum every parameter's gradient over ranks, in flat buckets (missing gradients are 0)."""
    bucket: list[torch.Tensor] = []
    size = 0
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        bucket.append(p.grad)
        size += p.grad.numel() * p.grad.element_size()
        if size >= BUCKET_BYTES:
            _reduce_bucket(bucket)
            bucket, size = [], 0
    if bucket:
        _reduce_bucket(bucket)


def _reduce_bucket(grads: list[torch.Tensor]) -> None:
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def _shrink(run, batch: StepBatch, reason: str, warn) -> StepBatch:
    """After an out-of-memory error on any rank: halve the micro-batch, or checkpoint activations."""
    run.optimizer.zero_grad(set_to_none=True)
    if run.device.type == "cuda":
        torch.cuda.empty_cache()
    old = batch.micro_batch
    if old > 1:
        run.micro_batch = max(1, old // 2)
        what = f"micro-batch {old} -> {run.micro_batch}"
    elif not run.activation_checkpointing:
        run.enable_activation_checkpointing()
        what = "micro-batch 1, activation checkpointing on"
    else:
        raise torch.OutOfMemoryError(
            f"out of memory at step {batch.step} with micro-batch 1 and activation "
            f"checkpointing ({reason}); the model does not fit this device"
        )
    run.oom_retries += 1
    warn(
        f"out of memory at step {batch.step} ({reason}): retrying the step with {what}; "
        f"gradient accumulation keeps the batch at {run.trial.batch_size} sequences"
    )
    return prepare_step(run, batch.step, run.micro_batch)


def train_step(run, batch: StepBatch) -> tuple[torch.Tensor, StepBatch]:
    """Forward/backward over `batch`, sum gradients over ranks, clip, AdamW.

    Returns this rank's summed NLL of the step (a device tensor: no sync) and the batch the
    step finally ran with (smaller micro-batches after an out-of-memory error).
    """
    lr = run.trial.lr_at(batch.step)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    while True:
        reason = None
        try:
            loss_total = _forward_backward(run, batch)
        except torch.OutOfMemoryError as exc:
            reason = (str(exc).splitlines() or ["CUDA out of memory"])[0][:200]
            loss_total = None
        if not _any_rank(run, reason is not None):
            break
        batch = _shrink(run, batch, reason or "on another rank", run.warn)
    params = [p for p in run.model.parameters() if p.requires_grad]
    if run.world_size > 1:
        all_reduce_gradients(params)
    clip = run.trial.optimizer.grad_clip
    if clip:
        torch.nn.utils.clip_grad_norm_(params, clip)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    return loss_total, batch
