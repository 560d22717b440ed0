"""`train_one_trial`: one grid point, start to finish, in plain PyTorch (no Ray, no MLflow).

The Ray Train worker and `slmscale train` both call this; a unit test calls it directly.  The
trial is a typed `slmscale.trial.Trial`, the only thing read about it.  What the outside world
sees goes through two callbacks: `reporter(metrics, step)` (step = tokens seen, DESIGN.md
"MLflow run schema") and `on_checkpoint(path | None, tokens_seen)` (every rank calls it; rank 0
passes the checkpoint it just wrote).

Loss normalisation: a step's loss is the summed token NLL of the whole global batch divided by its
number of target tokens, so neither micro-batching nor the worker count changes anything but
memory and speed (slmscale.train.step).

The host reads the device only at "flush" points: logging intervals, test-loss evaluations,
checkpoints and the last step.  There the per-step losses are summed over ranks, checked for
non-finite values (a checkpoint is never written after a non-finite step), logged, and the
wall-clock checkpoint interval is agreed between ranks (rank 0's clock decides).

A little over 400 lines on purpose: the trainer reads top to bottom in one file, set-up, resume,
the loop, its flush and the final outputs, as nanoGPT's train.py does; the step itself
(slmscale.train.step), evaluation, checkpoints and the schedule are their own modules.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from slmscale.corpus import TrialData, load_trial_data
from slmscale.model import build_model, training_flops
from slmscale.tracking.schema import (
    M_FLOPS,
    M_FLOPS_FULL,
    M_LR,
    M_MFU,
    M_TEST_LOSS,
    M_TEST_LOSS_FINAL,
    M_TOKENS_PER_SEC,
    M_TOKENS_TRAINED,
    M_TRAIN_LOSS,
    M_UNIQUE_TOKENS_SEEN,
)
from slmscale.train import checkpoint as ckpt
from slmscale.train.device import resolve_device
from slmscale.train.evaluation import (
    eval_interval,
    evaluate_test_loss,
    periodic_eval_budget,
    periodic_test_windows,
    score_spread,
)
from slmscale.train.optim import build_optimizer
from slmscale.train.options import RuntimeOptions, TrialResult
from slmscale.train.step import StepBatch, prepare_step, train_step
from slmscale.train.throughput import mfu, peak_flops
from slmscale.trial import Trial

Reporter = Callable[[dict, int], None]
OnCheckpoint = Callable[[Path | None, int], None]


def _noop(*_args) -> None:
    return None


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class Checkpointing:
    """Where a trial's checkpoints go and what happens to each (see `train_one_trial`)."""

    directory: Path | None = None
    on_checkpoint: OnCheckpoint = _noop
    keep: int | None = ckpt.KEEP
    at_steps: frozenset[int] = frozenset()  # also after these steps, the last one included


@dataclass
class _Run:
    """The state of one trial while it trains (the trainer's working set)."""

    trial: Trial
    data: TrialData
    model: torch.nn.Module  # the LlamaForCausalLM (what is saved)
    forward_model: torch.nn.Module  # the compiled view used for training steps
    optimizer: torch.optim.Optimizer
    device: torch.device
    bf16: bool
    micro_batch: int
    rank: int
    world_size: int
    options: RuntimeOptions
    report: Reporter
    checkpointing: Checkpointing
    warn: Callable[[str], None]
    progress: ckpt.Progress = field(default_factory=ckpt.Progress)
    activation_checkpointing: bool = False
    oom_retries: int = 0
    last_loss: float | None = None

    @property
    def steps(self) -> int:
        return self.trial.steps

    def autocast(self):
        if not self.bf16:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def enable_activation_checkpointing(self) -> None:
        kwargs = {"use_reentrant": False}
        if hasattr(self.model, "activation_checkpointing_enable"):  # transformers >= 5.2x
            self.model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        self.activation_checkpointing = True

    def all_reduce(self, *values: float) -> list[float]:
        if self.world_size == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.tolist()


def _barrier(device: torch.device) -> None:
    if torch.distributed.get_backend() == "nccl":
        torch.distributed.barrier(device_ids=[device.index])
    else:
        torch.distributed.barrier()


def _load_data(trial: Trial, rank: int, world: int, device: torch.device) -> TrialData:
    """Rank 0 prepares the trial's data (token store) while the others wait, then they open it.

    The token store also takes a file lock; the barrier makes the order explicit and keeps the
    other ranks from each stat-ing and hashing shards while rank 0 builds.  An error on rank 0
    is raised on every rank (they load after the barrier and meet it too), never a hang.
    """
    if world == 1:
        return load_trial_data(trial)
    data, error = None, None
    if rank == 0:
        try:
            data = load_trial_data(trial)
        except Exception as exc:  # noqa: BLE001 - re-raised after the barrier
            error = exc
    _barrier(device)
    if error is not None:
        raise error
    return data if data is not None else load_trial_data(trial)


def _setup(trial: Trial, data: TrialData | None, options: RuntimeOptions, rank: int, world: int):
    """Device, data, model, optimizer and the micro-batch: everything but the callbacks."""
    device = resolve_device(options.device)
    bf16 = trial.precision == "bf16" or (trial.precision == "auto" and device.type == "cuda")
    if options.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(trial.seed)
    data = data if data is not None else _load_data(trial, rank, world, device)
    model = build_model(trial.shape, data.n_units, trial.context).to(device)
    optimizer = build_optimizer(model, trial.optimizer, device)
    use_compile = options.compile if options.compile is not None else device.type == "cuda"
    forward_model = torch.compile(model) if use_compile else model
    per_worker = math.ceil(trial.batch_size / world)
    micro_batch = min(options.micro_batch_size or per_worker, per_worker)
    return data, model, forward_model, optimizer, device, bf16, micro_batch


def _resume(run: _Run, sources: Iterable) -> None:
    """Restore the newest usable checkpoint, with the memory settings it learned."""
    progress = ckpt.restore(sources, run.model, run.optimizer, run.warn)
    if progress is None:
        return
    run.progress = progress
    if progress.micro_batch:
        run.micro_batch = min(run.micro_batch, progress.micro_batch)
    if progress.activation_checkpointing and not run.activation_checkpointing:
        run.enable_activation_checkpointing()


def _checkpoint(run: _Run) -> None:
    where = run.checkpointing
    if where.directory is None:
        return
    path = None
    if run.rank == 0:
        run.progress.micro_batch = run.micro_batch
        run.progress.activation_checkpointing = run.activation_checkpointing
        path = ckpt.save_into(where.directory, run.model, run.optimizer, run.progress, where.keep)
    where.on_checkpoint(path, run.progress.tokens_seen)


def train_one_trial(
    trial: Trial,
    data: TrialData | None = None,
    reporter: Reporter | None = None,
    *,
    checkpoint_dir: str | Path | None = None,
    resume_from=None,
    output_dir: str | Path | None = None,
    options: RuntimeOptions | None = None,
    on_checkpoint: OnCheckpoint | None = None,
    rank: int = 0,
    world_size: int = 1,
    keep_checkpoints: int | None = ckpt.KEEP,
    checkpoint_steps: Iterable[int] = (),
    warn: Callable[[str], None] = _stderr,
) -> TrialResult:
    """Train one trial to exactly D tokens.

    Checkpoints go to `checkpoint_dir/ckpt-<step>` (the newest `keep_checkpoints` kept; None keeps
    all, for a caller that uploads and deletes them, e.g. Ray Train), on the options' interval
    and after each of `checkpoint_steps` (a WSD trunk's branch steps, its last step included).  Resumes from the newest
    usable checkpoint of `resume_from` (a checkpoint folder, a root of them, or an iterable of
    folders newest first; default: `checkpoint_dir`).  A non-finite loss ends the trial with
    status FAILED and the reason; nothing is raised.  With `output_dir`, rank 0 saves the final
    model there as `model/` (save_pretrained).
    """
    options = options or RuntimeOptions()
    parts = _setup(trial, data, options, rank, world_size)
    data, model, forward_model, optimizer, device, bf16, micro_batch = parts
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    run = _Run(
        trial=trial,
        data=data,
        model=model,
        forward_model=forward_model,
        optimizer=optimizer,
        device=device,
        bf16=bf16,
        micro_batch=micro_batch,
        rank=rank,
        world_size=world_size,
        options=options,
        report=reporter or _noop,
        checkpointing=Checkpointing(
            checkpoint_dir, on_checkpoint or _noop, keep_checkpoints, frozenset(checkpoint_steps)
        ),
        warn=warn,
    )
    if options.activation_checkpointing:
        run.enable_activation_checkpointing()
    resume_from = resume_from if resume_from is not None else checkpoint_dir
    if isinstance(resume_from, (str, Path)):
        resume_from = ckpt.candidates(resume_from)
    _resume(run, resume_from or [])
    failure = _train_loop(run)
    if failure is not None:
        return _result(run, "FAILED", failure, None)
    test_loss = evaluate_test_loss(run)
    stream = run.data.stream
    assert run.progress.tokens_seen == stream.tokens, (run.progress.tokens_seen, stream.tokens)
    result = _result(run, "FINISHED", None, test_loss)
    run.report(_final_metrics(run, result), run.progress.tokens_seen)
    if trial.benchmarks:
        result.downstream, result.eval_details = score_spread(run)
    if rank == 0:
        _finish_outputs(run, result, output_dir)
        if result.downstream:
            run.report(result.downstream, run.progress.tokens_seen)
    return result


@dataclass
class _Window:
    """What accumulates between two flush points."""

    losses: list = field(default_factory=list)  # (device loss sum of this rank, n_targets, step)
    tokens: int = 0
    started: float = field(default_factory=time.perf_counter)
    time_checkpoint: bool = False  # set at the flush: rank 0's wall clock says checkpoint now


@dataclass
class _Log:
    """What accumulates between two logging points (train loss mean, tokens/s)."""

    losses: list = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0


def _train_loop(run: _Run) -> str | None:
    """Steps until D tokens; returns a failure reason, or None when the budget is reached."""
    options, context = run.options, run.data.stream.context
    interval = eval_interval(run)
    sample = periodic_test_windows(
        run.data.test, periodic_eval_budget(run, options.periodic_eval_cost), context
    )
    sample_tokens = sum(len(w) for w in sample)
    log = _Log()
    last_checkpoint = time.monotonic()
    window = _Window()
    batch: StepBatch | None = None
    if run.progress.step < run.steps:
        batch = prepare_step(run, run.progress.step, run.micro_batch)
    while run.progress.step < run.steps:
        loss_sum, batch = train_step(run, batch)
        window.losses.append((loss_sum, batch.n_targets, run.progress.step))
        window.tokens += batch.tokens
        run.progress.step += 1
        run.progress.tokens_seen += batch.tokens
        step = run.progress.step
        batch = prepare_step(run, step, run.micro_batch) if step < run.steps else None
        log_due = step % options.log_every_steps == 0 or step == run.steps
        eval_due = step % interval == 0 and step < run.steps
        every = options.checkpoint_every_steps
        step_ckpt_due = every is not None and step % every == 0 and step < run.steps
        asked = step in run.checkpointing.at_steps
        if not (log_due or eval_due or step_ckpt_due or asked):
            continue
        # Flush: one host sync for the whole window of steps.
        wants_time_ckpt = (
            every is None
            and run.rank == 0
            and time.monotonic() - last_checkpoint >= 60.0 * options.checkpoint_every_minutes
        )
        failure = _flush(run, window, log, wants_time_ckpt, log_due)
        if failure is not None:
            return failure
        if eval_due:
            loss = evaluate_test_loss(run, sample)
            run.progress.periodic_eval_tokens += sample_tokens
            seen = run.progress.tokens_seen
            run.report({M_TEST_LOSS: loss, **_flops(run, seen)}, seen)
        if asked or ((step_ckpt_due or window.time_checkpoint) and step < run.steps):
            _checkpoint(run)
            last_checkpoint = time.monotonic()
        window = _Window()
    return None


def _flush(run: _Run, window: _Window, log: _Log, wants_time_ckpt: bool, log_due: bool):
    """Sum the window's losses over ranks (one host sync), check them, log when due.

    Sets `window.time_checkpoint` (rank 0's clock decides for every rank); returns a failure
    reason for a non-finite loss, else None.
    """
    sums = [s for s, _, _ in window.losses]
    reduced = run.all_reduce(*torch.stack(sums).double().tolist(), float(wants_time_ckpt))
    seconds = time.perf_counter() - window.started
    run.progress.train_seconds += seconds
    window.time_checkpoint = reduced[-1] > 0
    per_step = [r / max(n, 1) for r, (_, n, _) in zip(reduced[:-1], window.losses, strict=True)]
    seen = run.progress.tokens_seen
    for loss, (_, _, s) in zip(per_step, window.losses, strict=True):
        if not math.isfinite(loss):
            return f"non-finite train loss ({loss}) at step {s} after {seen:,} tokens"
    run.last_loss = per_step[-1]
    log.losses += per_step
    log.tokens += window.tokens
    log.seconds += seconds
    if log_due:
        tps = log.tokens / max(log.seconds, 1e-9)
        metrics = {
            M_TRAIN_LOSS: float(np.mean(log.losses)),
            M_LR: run.optimizer.param_groups[0]["lr"],
            M_TOKENS_PER_SEC: tps,
            **_flops(run, seen),
        }
        util = mfu(tps, run.trial.shape, run.trial.context, _peak(run), run.world_size)
        if util is not None:
            metrics[M_MFU] = util
        run.report(metrics, seen)
        log.losses.clear()
        log.tokens, log.seconds = 0, 0.0
    return None


def _flops(run: _Run, tokens_seen: int) -> dict:
    """Compute after `tokens_seen` tokens, both ways (slmscale.model): 6ND and the full count."""
    trial = run.trial
    return {
        M_FLOPS: training_flops(trial.n_params, tokens_seen),
        M_FLOPS_FULL: trial.flops_full / trial.tokens * tokens_seen,
    }


def _peak(run: _Run) -> float | None:
    return peak_flops(torch.cuda.get_device_name(run.device)) if run.device.type == "cuda" else None


def _result(run: _Run, status: str, reason: str | None, test_loss: float | None) -> TrialResult:
    seen = run.progress.tokens_seen
    tps = seen / run.progress.train_seconds if run.progress.train_seconds > 0 else 0.0
    trial = run.trial
    return TrialResult(
        status=status,
        reason=reason,
        steps=run.progress.step,
        tokens_trained=seen,
        unique_tokens_seen=run.data.stream.unique_seen(seen),
        test_loss_final=test_loss,
        train_loss=run.last_loss,
        tokens_per_sec=tps,
        mfu=mfu(tps, trial.shape, trial.context, _peak(run), run.world_size),
        micro_batch=run.micro_batch,
        oom_retries=run.oom_retries,
        periodic_eval_tokens=run.progress.periodic_eval_tokens,
        # a forward pass costs a third of a training step per token
        periodic_eval_flops_fraction=run.progress.periodic_eval_tokens / (3.0 * max(seen, 1)),
    )


def _final_metrics(run: _Run, result: TrialResult) -> dict:
    """The end-of-trial metrics: final test loss, exact token accounting, average throughput."""
    metrics = {
        M_TEST_LOSS: result.test_loss_final,
        M_TEST_LOSS_FINAL: result.test_loss_final,
        **_flops(run, result.tokens_trained),
        M_TOKENS_TRAINED: result.tokens_trained,
        M_UNIQUE_TOKENS_SEEN: result.unique_tokens_seen,
        M_TOKENS_PER_SEC: result.tokens_per_sec,
    }
    if result.mfu is not None:
        metrics[M_MFU] = result.mfu
    return metrics


def _finish_outputs(run: _Run, result: TrialResult, output_dir: str | Path | None) -> None:
    """Rank 0: the saved final model."""
    if output_dir is not None:
        result.model_dir = Path(output_dir) / "model"
        run.model.save_pretrained(result.model_dir)
