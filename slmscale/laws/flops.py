"""Training compute, two ways (issue 26): the paper's C = 6 N D, and the full count.

Both are the model module's (`slmscale.model.training_flops`, `slmscale.model.flops_full`): the
laws never write 6 N D themselves.  The full count adds what 6N per token leaves out (Porian et
al. 2024 trace much of the Kaplan / Chinchilla discrepancy to it): the output layer and causal
attention over the context; at speech-LM sizes with a 2,050-token context attention alone adds
about context / (12 d_model) of 6N: 0.67 at d = 256, 0.17 at d = 1,024.

`fit`, `report` and `plan` take `--flops 6nd|full` (`FLOPS_DEFINITIONS`).
"""

from __future__ import annotations

import math

import numpy as np

from slmscale.model import N_SPECIAL_TOKENS, ModelShape, flops_full, training_flops

FLOPS_DEFINITIONS = ("6nd", "full")


def six_nd(N, D):
    """C = 6 N D (Kaplan et al., the paper's Eq. 5 convention), elementwise."""
    return training_flops(np.asarray(N, float), np.asarray(D, float))


def full_from_params(n_layers, d_model, n_heads, context, vocab, tokens) -> float:
    """The full count of one run from its logged shape params (NaN when one is missing)."""
    vals = (n_layers, d_model, n_heads, context, vocab, tokens)
    if any(v is None or not math.isfinite(float(v)) or float(v) <= 0 for v in vals):
        return math.nan
    shape = ModelShape("run", int(n_layers), int(d_model), int(n_heads))
    n_units = int(round(float(vocab))) - N_SPECIAL_TOKENS
    return float(flops_full(shape, n_units, int(context), float(tokens)))
