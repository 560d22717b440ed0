"""Faults injected into the training core by the tests, never by the core itself.

The core has no test hooks: these wrap its functions from the outside.  In the test process a
fixture installs them with `monkeypatch` (tests/conftest.py `inject_faults`); in processes the
tests start (a `slmscale` CLI, Ray's workers) `sitecustomize.py` beside this file installs them
when `SLMSCALE_TEST_FAULTS` holds a JSON spec and this folder is on PYTHONPATH.

A spec maps a trial key (or "*": every trial) to its faults:
- `raise_at_step`: raise InjectedFault before that step (a code failure);
- `nan_at_step`: that step's loss becomes NaN (a diverged run);
- `oom_above_micro_batch` (and `oom_from_step`): a device where only micro-batches up to that
  size fit without activation checkpointing (torch.OutOfMemoryError otherwise);
- `kill_at_step` + `kill_marker`: SIGKILL the process before that step, once (the marker file
  is created first), as a preempted node looks from the worker.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

ENV = "SLMSCALE_TEST_FAULTS"
HERE = Path(__file__).resolve().parent


class InjectedFault(RuntimeError):
    """Raised by `raise_at_step` (a failure of the training code)."""


def env(spec: dict[str, dict]) -> dict[str, str]:
    """The environment that installs `spec` in every process started with it."""
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    return {ENV: json.dumps(spec), "PYTHONPATH": path}


def _faults(spec: dict, run) -> dict:
    return spec.get(run.trial.key) or spec.get("*") or {}


def wrap_train_step(real, spec: dict):
    def train_step(run, batch):
        faults = _faults(spec, run)
        if faults.get("raise_at_step") == batch.step:
            raise InjectedFault(f"injected failure before step {batch.step}")
        if faults.get("kill_at_step") == batch.step and faults.get("kill_marker"):
            try:
                Path(faults["kill_marker"]).touch(exist_ok=False)
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        loss, batch = real(run, batch)
        if faults.get("nan_at_step") == batch.step:
            loss = loss * float("nan")
        return loss, batch

    return train_step


def wrap_nll_sum(real, spec: dict):
    import torch

    def nll_sum(run, model, inputs, labels):
        faults = _faults(spec, run)
        limit = faults.get("oom_above_micro_batch")
        training = model is run.forward_model and run.model.training
        if (
            training
            and limit is not None
            and len(inputs) > limit
            and not run.activation_checkpointing
            and run.progress.step >= faults.get("oom_from_step", 0)
        ):
            raise torch.OutOfMemoryError(f"injected: micro-batch {len(inputs)} > {limit}")
        return real(run, model, inputs, labels)

    return nll_sum


def install(spec: dict, setattr_=setattr) -> None:
    """Wrap the core's step (slmscale.train.loop.train_step, slmscale.train.step.nll_sum)."""
    from slmscale.train import loop, step

    setattr_(loop, "train_step", wrap_train_step(loop.train_step, spec))
    setattr_(step, "nll_sum", wrap_nll_sum(step.nll_sum, spec))
