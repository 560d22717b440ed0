"""Batched sequence log-likelihood under a causal LM (pure PyTorch).

log p(u_1..u_T) = sum_t log p(u_t | BOS, u_1..u_{t-1}): BOS is prepended, no EOS is appended (a
benchmark utterance is not a finished document), and every unit token counts.  The length-normalised
score is that sum over T.  Both are returned; `metrics` decides which one a benchmark reports.

Batching: sequences are sorted by length (longest first) and packed greedily under a token budget,
right-padded, with an attention mask.  Right padding keeps every real token's position and causal
context unchanged, so a sequence scores the same alone or in any batch (up to float kernel
rounding on real models; exactly for simple ones).  On CUDA the forward runs under bf16 autocast;
the log-softmax and the sums are always float32/float64.

A sequence longer than the model's positions (BOS + units > max_positions) keeps its last
max_positions - 1 units (truncated from the left: the ending, which decides a cloze pair, stays)
and is counted in `SequenceScores.truncated`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_BATCH_TOKENS = 16384
DEFAULT_BATCH_SIZE = 64


@dataclass(frozen=True)
class SequenceScores:
    sums: np.ndarray  # float64 [n]: summed log-probability of the unit tokens
    counts: np.ndarray  # int64 [n]: unit tokens scored (after truncation)
    truncated: int  # sequences cut from the left to fit the model's positions

    @property
    def means(self) -> np.ndarray:
        """Length-normalised log-likelihood (0 for an empty sequence)."""
        return np.divide(
            self.sums, self.counts, out=np.zeros_like(self.sums), where=self.counts > 0
        )


def model_max_positions(model) -> int | None:
    """The model's context length if it declares one (HF configs: max_position_embeddings)."""
    config = getattr(model, "config", None)
    value = getattr(config, "max_position_embeddings", None)
    return int(value) if value else None


def plan_batches(lengths: Sequence[int], max_tokens: int, max_size: int) -> list[list[int]]:
    """Indices grouped into batches, longest first; a batch's padded size stays <= max_tokens.

    A single sequence longer than `max_tokens` still gets a batch of its own.  Ties in length keep
    input order, so the plan (and hence the result) is a pure function of the lengths.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = lengths[current[0]] if current else lengths[i]  # first member is the longest
        if current and ((len(current) + 1) * width > max_tokens or len(current) >= max_size):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _score_batch(model, rows: list[list[int]], pad_id: int, device: torch.device) -> torch.Tensor:
    """Summed log-probs (float64, on CPU) of tokens 1.. of each row; token 0 is BOS."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, r in enumerate(rows):
        ids[j, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[j, : len(r)] = 1
    ids, mask = ids.to(device), mask.to(device)
    with _autocast(device):
        logits = model(input_ids=ids, attention_mask=mask).logits
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    target = logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    # where, not a product: a padded position may hold -inf (0 * -inf would be NaN)
    target = torch.where(mask[:, 1:].bool(), target.double(), torch.zeros_like(target.double()))
    return target.sum(dim=1).cpu()


@torch.inference_mode()
def score_sequences(
    model,
    sequences: Sequence[Sequence[int]],
    *,
    bos_id: int,
    pad_id: int,
    device: str | torch.device = "cpu",
    max_positions: int | None = None,
    max_batch_tokens: int = DEFAULT_BATCH_TOKENS,
    max_batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
) -> SequenceScores:
    """Log-likelihood (sum and token count) of each unit sequence, BOS prepended.

    `model(input_ids=..., attention_mask=...)` must return an object with `.logits` [B, T, V] and
    already live on `device`.  `max_positions` defaults to the model's own context length.
    `on_batch(n)` is called after each batch with the number of sequences it scored (progress).
    """
    device = torch.device(device)
    limit = max_positions or model_max_positions(model)
    rows, truncated = [], 0
    for seq in sequences:
        seq = [int(u) for u in seq]
        if limit is not None and len(seq) + 1 > limit:
            seq = seq[len(seq) - (limit - 1) :]
            truncated += 1
        rows.append([bos_id, *seq])
    sums = np.zeros(len(rows), dtype=np.float64)
    counts = np.array([len(r) - 1 for r in rows], dtype=np.int64)
    lengths = [len(r) for r in rows]
    for batch in plan_batches(lengths, max_batch_tokens, max_batch_size):
        sums[batch] = _score_batch(model, [rows[i] for i in batch], pad_id, device).numpy()
        if on_batch is not None:
            on_batch(len(batch))
    return SequenceScores(sums=sums, counts=counts, truncated=truncated)
