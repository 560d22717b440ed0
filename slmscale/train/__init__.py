"""Stage 2's training core (pure PyTorch, no Ray, no MLflow): one trial, start to finish.

`train_one_trial(trial, ...)` trains a typed trial (slmscale.trial.Trial) to exactly D tokens
with the paper's optimizer and schedule, checkpoints and resumes, and reports metrics through a
callback; the Ray Train worker and `slmscale train` only wrap it.

Names are loaded on first use, so importing a light submodule (schedule, throughput) does not
import torch (keeps `slmscale --help` fast).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "RuntimeOptions": "slmscale.train.options",
    "TrialResult": "slmscale.train.options",
    "evaluate_test_loss": "slmscale.train.evaluation",
    "resolve_device": "slmscale.train.device",
    "train_one_trial": "slmscale.train.loop",
    "lr_at": "slmscale.train.schedule",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'slmscale.train' has no attribute {name!r}")
