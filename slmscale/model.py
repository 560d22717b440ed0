"""Model sizes, exact parameter counts and FLOP accounting (pure core: no Ray, no MLflow).

Table 1 of the paper names five Llama sizes.  The paper's size names count *non-embedding*
parameters (the Kaplan/Hoffmann convention); with the Llama MLP width rule
(intermediate = 8/3 x dim rounded up to a multiple of 256) the closed forms below reproduce
them: 20.45M, 84.95M, 154.17M, 308.33M, 822.15M.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

# Special tokens appended after the K unit ids: units are 0..K-1.
N_SPECIAL_TOKENS = 3  # PAD, BOS, EOS


def special_token_ids(n_units: int) -> dict[str, int]:
    """Ids of the special tokens for a vocabulary of `n_units` units (they follow the units)."""
    return {"pad": n_units, "bos": n_units + 1, "eos": n_units + 2}


def vocab_size(n_units: int) -> int:
    return n_units + N_SPECIAL_TOKENS


def llama_intermediate_size(dim: int, multiple_of: int = 256) -> int:
    """Llama's SwiGLU width: 2/3 of 4*dim, rounded up to a multiple of `multiple_of`."""
    hidden = int(2 * 4 * dim / 3)
    return multiple_of * math.ceil(hidden / multiple_of)


@dataclass(frozen=True)
class ModelShape:
    """The architecture of one Llama speech LM.  `name` is a Table 1 size or a user's label."""

    name: str
    n_layers: int
    dim: int
    n_heads: int
    intermediate: int | None = None  # None: Llama's rule from `dim`
    n_kv_heads: int | None = None  # None: multi-head attention (no GQA), as in the paper

    @property
    def ffn_dim(self) -> int:
        return self.intermediate or llama_intermediate_size(self.dim)

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_dict(self) -> dict:
        d = asdict(self)
        d["intermediate"] = self.ffn_dim
        d["n_kv_heads"] = self.kv_heads
        return d


# Table 1 of the paper.
PAPER_SIZES: dict[str, ModelShape] = {
    "20M": ModelShape("20M", n_layers=6, dim=512, n_heads=8),
    "85M": ModelShape("85M", n_layers=12, dim=768, n_heads=12),
    "155M": ModelShape("155M", n_layers=12, dim=1024, n_heads=16),
    "309M": ModelShape("309M", n_layers=24, dim=1024, n_heads=16),
    "823M": ModelShape("823M", n_layers=16, dim=2048, n_heads=32),
}

# Section 3.1: batch sizes (sequences of `context` tokens) of 64, 128, 256 and 512 for the
# 20M, 85M, 155M and 309M, and 823M models.  The text lists four batch sizes for five models;
# we read it as 155M and 309M sharing 256.
PAPER_BATCH_SIZES: dict[str, int] = {"20M": 64, "85M": 128, "155M": 256, "309M": 256, "823M": 512}
PAPER_CONTEXT = 2050


def budget_reference_params(shape: ModelShape) -> float:
    """The N that D/N budgets multiply: the nominal Table 1 size for paper sizes, else exact N.

    The paper sets budgets from its size names: 155M at D/N = 128 is 128 x 155e6 = 19.84B tokens,
    which is what makes its stated 1.82 passes over 10.89B tokens (and 85M at 128 its 0.99).
    """
    if shape.name in PAPER_SIZES and PAPER_SIZES[shape.name] == shape:
        return float(shape.name.rstrip("M")) * 1e6
    return float(non_embedding_params(shape))


def non_embedding_params(shape: ModelShape) -> int:
    """N: parameters outside the token embedding and the output head.

    Per layer: q and o projections (dim x dim each), k and v (dim x kv_dim each), the SwiGLU MLP
    (3 x dim x ffn) and two RMSNorm weights; plus the final RMSNorm.  No biases (Llama).
    """
    kv_dim = shape.kv_heads * shape.head_dim
    attn = 2 * shape.dim * shape.dim + 2 * shape.dim * kv_dim
    mlp = 3 * shape.dim * shape.ffn_dim
    norms = 2 * shape.dim
    return shape.n_layers * (attn + mlp + norms) + shape.dim


def total_params(shape: ModelShape, vocab: int, tie_embeddings: bool = False) -> int:
    """All parameters: N plus the input embedding and (unless tied) the output head."""
    emb = vocab * shape.dim
    return non_embedding_params(shape) + emb + (0 if tie_embeddings else emb)


def flops_per_token(shape: ModelShape, context: int | None = None) -> float:
    """Training FLOPs per token.

    Without `context`: 6N (Kaplan et al., the C = 6ND of Eq. 5, what the laws are fitted
    against).  With `context`: 6N + 12 * n_layers * context * dim, the attention term of nanoGPT's
    `estimate_mfu`, PaLM (appendix B) and torchtitan: per layer the scores QK^T and their weighted
    sum of V cost 2 * 2 * context * dim FLOPs per token forward (counted over the full context,
    without the causal halving), and backward twice that, so 3 x 4 = 12.  This is the FLOP count
    MFU and GPU-hour estimates use (slmscale.train.throughput).
    """
    f = 6.0 * non_embedding_params(shape)
    if context is not None:
        f += 12.0 * shape.n_layers * context * shape.dim
    return f


def training_flops(n_params, tokens):
    """C = 6 N D, N the non-embedding parameters: the paper's compute (Kaplan et al.; Eq. 5/6),
    what the laws are fitted against.  Works on numbers and numpy arrays alike."""
    return 6.0 * n_params * tokens


def flops_full_per_token(shape: ModelShape, n_units: int, context: int) -> float:
    """Training FLOPs per token counted in full (Porian et al. 2024): 6N, plus the output layer
    and causal attention, which 6N leaves out.

    - Output layer: a d x V matmul, 2 d V forward, 6 d V for training (the input embedding is a
      lookup: no FLOPs).
    - Attention: token j of a window attends to j + 1 positions; scores QK^T and the weighted
      sum of V cost 2 x 2 x d x (j + 1) forward per layer, x 3 for training; averaged over the
      window's positions that is 6 d (context + 1) per layer.  (MFU uses `flops_per_token`'s
      12 L T d, the uncausal convention of PaLM and nanoGPT; this one counts what a causal
      kernel computes.)  Relative to 6N it adds about context / (12 d): 0.67 at d = 256.
    """
    output = 6.0 * shape.dim * vocab_size(n_units)
    attention = 6.0 * shape.n_layers * shape.dim * (context + 1)
    return 6.0 * non_embedding_params(shape) + output + attention


def flops_full(shape: ModelShape, n_units: int, context: int, tokens: float) -> float:
    """Training FLOPs of `tokens` tokens, counted in full (see flops_full_per_token)."""
    return flops_full_per_token(shape, n_units, context) * tokens


def llama_config(shape: ModelShape, n_units: int, context: int = PAPER_CONTEXT, **overrides):
    """A `transformers.LlamaConfig` for `shape` over `n_units` units plus PAD/BOS/EOS."""
    from transformers import LlamaConfig

    special = special_token_ids(n_units)
    kwargs = dict(
        vocab_size=vocab_size(n_units),
        hidden_size=shape.dim,
        intermediate_size=shape.ffn_dim,
        num_hidden_layers=shape.n_layers,
        num_attention_heads=shape.n_heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=context,
        pad_token_id=special["pad"],
        bos_token_id=special["bos"],
        eos_token_id=special["eos"],
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        rms_norm_eps=1e-5,
    )
    kwargs.update(overrides)
    return LlamaConfig(**kwargs)


def build_model(shape: ModelShape, n_units: int, context: int = PAPER_CONTEXT, **overrides):
    """A randomly initialised `LlamaForCausalLM` of this shape."""
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM(llama_config(shape, n_units, context, **overrides))


def default_batch_size(shape: ModelShape) -> int:
    """The paper's batch size for a Table 1 size; for custom shapes, by N (nearest paper size)."""
    if shape.name in PAPER_BATCH_SIZES:
        return PAPER_BATCH_SIZES[shape.name]
    n = non_embedding_params(shape)
    nearest = min(PAPER_SIZES.values(), key=lambda s: abs(math.log(non_embedding_params(s) / n)))
    return PAPER_BATCH_SIZES[nearest.name]
