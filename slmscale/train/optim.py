"""AdamW as in the paper (wd 0.1), decaying matrices only.

Weight decay applies to every parameter with two or more dimensions (attention and MLP
projections, the token embedding and the output head); RMSNorm gains (1-D) are not decayed, as in
nanoGPT and most Llama recipes: decaying a gain pulls the normalised activations towards zero,
which is not the regularisation intended.  On CUDA the fused AdamW kernel is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from slmscale.trial import Optimizer


def build_optimizer(
    model: torch.nn.Module, opt: Optimizer, device: torch.device
) -> torch.optim.AdamW:
    """AdamW over `model` (lr is set per step by the schedule)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": opt.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups,
        lr=opt.lr_max,
        betas=(opt.beta1, opt.beta2),
        eps=opt.eps,
        fused=device.type == "cuda",
    )
