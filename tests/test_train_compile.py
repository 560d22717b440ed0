"""The GPU defaults that run on a CPU: torch.compile (inductor) and bf16 autocast, seen in CI.

A GPU trial trains compiled and in bf16 (RuntimeOptions.compile None -> on for CUDA; precision
auto -> bf16 on CUDA).  No test here has a GPU, so this one turns both on for the CPU: a compile
path that breaks, drifts from eager, or recompiles for every trial of a pack would otherwise
first show on rented GPUs.  What it pins down:
- the compiled bf16 loss curve equals the eager bf16 one (to 1e-3 per step);
- a second trial of the same shape in the same process (a pack: new model, same code) compiles
  nothing new;
- an out-of-memory error that halves the micro-batch mid-trial costs at most one recompile, and
  the trial finishes with the halved micro-batch.
Slow: inductor compiles C++ kernels for the forward and backward graphs (a minute or more).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import slmscale_faults
import torch
from _trials import tiny_trial

from slmscale.tracking.schema import M_TRAIN_LOSS
from slmscale.train import RuntimeOptions, train_one_trial
from slmscale.train.synthetic import write_synthetic_units
from slmscale.trial import DataSource


def _curve(trial, **options):
    losses = []

    def reporter(metrics, step):
        if M_TRAIN_LOSS in metrics:
            losses.append(metrics[M_TRAIN_LOSS])

    opts = RuntimeOptions(device="cpu", log_every_steps=1, **options)
    return losses, train_one_trial(trial, reporter=reporter, options=opts, warn=lambda _l: None)


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_compiled_bf16_matches_eager_and_does_not_recompile_per_trial(tmp_path, monkeypatch):
    from torch._dynamo.utils import counters

    write_synthetic_units(tmp_path / "units")
    # 8 steps of 4 windows of 64 tokens and a last, partial step (a shorter window: a new shape).
    trial = tiny_trial(
        data=(DataSource.at(str(tmp_path / "units")),),
        tokens=2048 + 100,
        unique_tokens=2048 + 100,
        precision="bf16",
    )
    eager, _ = _curve(trial, compile=False)
    torch._dynamo.reset()
    counters.clear()
    compiled, first = _curve(trial, compile=True)
    assert first.status == "FINISHED" and len(compiled) == len(eager) == trial.steps
    assert max(abs(a - b) for a, b in zip(eager, compiled, strict=True)) < 1e-3
    after_one = _graphs()
    assert 1 <= after_one <= 2  # the full steps, and at most one more for the partial last step
    assert not counters["graph_break"], dict(counters["graph_break"])

    # A pack's next trial: a new model of the same shape, trained in the same process.
    _, second = _curve(replace(trial, seed=1), compile=True)
    assert second.status == "FINISHED"
    assert _graphs() == after_one, "a trial of the same shape recompiled"

    # Out of memory above a micro-batch of 2 from step 3: halved once, at most one recompile.
    with monkeypatch.context() as m:
        faults = {"oom_above_micro_batch": 2, "oom_from_step": 3}
        slmscale_faults.install({"*": faults}, m.setattr)
        _, halved = _curve(replace(trial, seed=2), compile=True, micro_batch_size=4)
    assert halved.status == "FINISHED" and halved.micro_batch == 2 and halved.oom_retries == 1
    assert _graphs() <= after_one + 1
    print(
        f"compiled vs eager (bf16): max |loss difference| "
        f"{max(abs(a - b) for a, b in zip(eager, compiled, strict=True)):.2e}; graphs "
        f"{after_one} after the first trial, {_graphs()} after a second trial and a halved "
        "micro-batch"
    )
