"""Small typed trials and jobs for tests that need one but no data or training."""

from __future__ import annotations

from dataclasses import replace

from slmscale.model import ModelShape
from slmscale.trial import DataSource, Trial


def tiny_trial(**fields) -> Trial:
    """A one-layer trial over a units dataset at `units/` (not read): override any field."""
    base = Trial(
        shape=ModelShape("tiny", 1, 32, 2),
        n_units=20,
        tokens=4096,
        unique_tokens=4096,
        batch_size=4,
        context=64,
        seed=0,
        tokenizer="synthetic-k20",
        data=(DataSource.at("units"),),
        data_order=2,
    )
    return replace(base, **fields)


def tiny_job(trial: Trial | None = None, **fields):
    """A TrialJob of `trial` (default: tiny_trial()) with empty tracking and storage."""
    from slmscale.grid.runner import TrialJob

    base = TrialJob(trial or tiny_trial(), "run", "g", "units@x", "", "", "")
    return replace(base, **fields)
