"""Training memory of one device, from a model calibrated against measured saved tensors.

What a training step holds at its peak on one worker:

- static: fp32 weights, their gradients and AdamW's two moments, 16 bytes per parameter;
- the activations autograd saves for backward, for one micro-batch of T = micro_batch x context
  tokens (`activation_bytes`);
- a transient at the start of backward: one layer's activations again (the gradients flowing
  through it) and the fp32 gradient of the logits;
- a fixed 1 GiB for the CUDA context, cuBLAS workspaces and allocator slack.

The activation model is not a rule of thumb: it was fitted to the bytes that
`torch.autograd.graph.saved_tensors_hooks` sees for the HF Llama the trainer actually builds (eager,
SDPA attention, CPU bf16 autocast standing in for CUDA), storages counted once, parameters
excluded, and `tests/test_train_memory.py` measures it again for every Table 1 size.  Per layer
and token, in bytes (d = dim, f = MLP width, h = heads):

    bf16 autocast: 34 d + 8 f + 4 h + 8      fp32: 40 d + 16 f + 4 h + 8

Under autocast HF Llama keeps the residual stream, both RMSNorms and their outputs in fp32
(8 d each norm), casts each projection's input to bf16 separately (q, k, v: 6 d; gate, up: 4 d),
and saves RoPE'd q, k, v, the attention output and its contiguous copy (10 d), the SiLU output,
the gated product's two inputs and the down projection's input (8 f), and the attention's
log-sum-exp (4 h).  Outside the layers, per token: the embedding output, the final norm and the
head's input (10 d bf16, 12 d fp32) and the fp32 log-softmax of the logits (about 5 V).  Under
autocast the bf16 copies of every weight matrix are cached for the whole forward pass (2 bytes per
matrix parameter).  With activation checkpointing each layer keeps only its fp32 input (4 d per
token) and one layer at a time is recomputed.

torch.compile on CUDA fuses the norms and usually saves less; the model is the eager upper bound,
and an out-of-memory error at run time halves the micro-batch anyway (slmscale.train.step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from slmscale.model import ModelShape, non_embedding_params, total_params, vocab_size

GIB = 2**30
FIXED_OVERHEAD_BYTES = 1 * GIB  # CUDA context, cuBLAS workspace, allocator slack
HEADROOM = 0.92  # plan to use at most this share of the declared memory


def _matrix_params(shape: ModelShape, n_units: int) -> int:
    """Parameters of the weight matrices autocast copies to bf16 (layers and output head)."""
    norms = (2 * shape.n_layers + 1) * shape.dim
    return non_embedding_params(shape) - norms + vocab_size(n_units) * shape.dim


def layer_activation_bytes_per_token(shape: ModelShape, bf16: bool = True) -> float:
    """Bytes one decoder layer saves for backward per token (the calibrated formula above)."""
    a, b = (34, 8) if bf16 else (40, 16)
    return a * shape.dim + b * shape.ffn_dim + 4 * shape.n_heads + 8


def activation_bytes(
    shape: ModelShape,
    n_units: int,
    micro_batch: int,
    context: int,
    *,
    bf16: bool = True,
    checkpointing: bool = False,
) -> float:
    """Bytes autograd holds for backward after the forward pass of one micro-batch."""
    tokens = micro_batch * context
    per_layer = layer_activation_bytes_per_token(shape, bf16) * tokens
    outside = ((10 if bf16 else 12) * shape.dim + 5 * vocab_size(n_units) + 24) * tokens
    weights = 2.0 * _matrix_params(shape, n_units) if bf16 else 0.0
    if checkpointing:
        layers = shape.n_layers * 4 * shape.dim * tokens + per_layer
    else:
        layers = shape.n_layers * per_layer
    return layers + outside + weights


@dataclass(frozen=True)
class MemoryEstimate:
    static: float  # weights, gradients, AdamW moments
    activations: float
    transient: float
    fixed: float

    @property
    def total(self) -> float:
        return self.static + self.activations + self.transient + self.fixed

    @property
    def gib(self) -> float:
        return self.total / GIB


def training_memory(
    shape: ModelShape,
    n_units: int,
    micro_batch: int,
    context: int,
    *,
    bf16: bool = True,
    checkpointing: bool = False,
) -> MemoryEstimate:
    """Predicted peak memory of one training step on one device (see the module docstring)."""
    tokens = micro_batch * context
    static = 16.0 * total_params(shape, vocab_size(n_units))
    act = activation_bytes(
        shape, n_units, micro_batch, context, bf16=bf16, checkpointing=checkpointing
    )
    transient = layer_activation_bytes_per_token(shape, bf16) * tokens
    transient += 8.0 * tokens * vocab_size(n_units)
    return MemoryEstimate(static, act, transient, FIXED_OVERHEAD_BYTES)


@dataclass(frozen=True)
class MicroBatchChoice:
    micro_batch: int
    checkpointing: bool
    estimate: MemoryEstimate


def choose_micro_batch(
    shape: ModelShape,
    n_units: int,
    batch_per_worker: int,
    context: int,
    memory_gb: float,
    *,
    bf16: bool = True,
    checkpointing: bool | None = None,
    cap: int | None = None,
) -> MicroBatchChoice | None:
    """The largest micro-batch (a divisor of the per-worker batch, at most `cap`) that fits.

    `checkpointing` None: without activation checkpointing when one sequence fits, else with it.
    None when nothing fits (the weights and optimizer alone are too large).
    """
    budget = memory_gb * GIB * HEADROOM
    modes = [False, True] if checkpointing is None else [checkpointing]
    for ckpt in modes:
        for mb in sorted(divisors(batch_per_worker), reverse=True):
            if cap is not None and mb > cap:
                continue
            est = training_memory(shape, n_units, mb, context, bf16=bf16, checkpointing=ckpt)
            if est.total <= budget:
                return MicroBatchChoice(mb, ckpt, est)
    return None


def divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def saved_tensor_bytes(model, input_ids, *, bf16: bool, device_type: str = "cpu") -> int:
    """Measure: bytes of the tensors autograd saves in one forward pass and loss of `model`.

    Storages are counted once (views share them) and parameters are left out; what is counted
    is what a real step keeps alive until backward.  The loss is the trainer's (fp32 logits).
    """
    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in params:
            seen[ptr] = max(seen.get(ptr, 0), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=input_ids).logits
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.size(-1)), input_ids[:, 1:].reshape(-1)
        )
    del loss, logits
    return sum(seen.values())
