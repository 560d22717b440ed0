"""`train_one_trial`: one grid point, start to finish, in plain PyTorch (no Ray, no MLflow).

The Ray Train worker and `slmscale train` both call this; a unit test calls it directly.  What
the outside world sees goes through two callbacks: `reporter(metrics, step)` (step = tokens
seen, DESIGN.md "MLflow run schema") and `on_checkpoint(path | None, tokens_seen)` (every rank
calls it; rank 0 passes the checkpoint it just wrote).

Loss normalisation: a step's loss is the summed token NLL of the whole global batch divided by its
number of target tokens, so neither micro-batching nor the worker count changes anything but
memory and speed (slmscale.train.step).

The host reads the device only at "flush" points: logging intervals, test-loss evaluations,
checkpoints and the last step.  There the per-step losses are summed over ranks, checked for
non-finite values (a checkpoint is never written after a non-finite step), logged, and the
wall-clock checkpoint interval is agreed between ranks (rank 0's clock decides).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from slmscale.corpus import TrialData, load_trial_data
from slmscale.grid.expand import warmup_steps
from slmscale.model import ModelShape, build_model, flops_per_token, non_embedding_params
from slmscale.tracking.schema import (
    M_FLOPS,
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
from slmscale.train.evaluation import (
    eval_interval,
    evaluate_test_loss,
    periodic_eval_budget,
    periodic_test_windows,
    score_spread,
)
from slmscale.train.optim import build_optimizer
from slmscale.train.options import (
    FaultInjection,
    InjectedFault,
    RuntimeOptions,
    TrialResult,
)
from slmscale.train.step import StepBatch, prepare_step, train_step
from slmscale.train.throughput import mfu, peak_flops

Reporter = Callable[[dict, int], None]
OnCheckpoint = Callable[[Path | None, int], None]


def _noop(*_args) -> None:
    return None


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def resolve_device(requested: str | None) -> torch.device:
    """CUDA if asked for (or not said) and present; else CPU (e.g. Ray granted a GPU torch lacks)."""
    if requested in (None, "auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@dataclass
class _Run:
    """The state of one trial while it trains (the trainer's working set)."""

    config: dict
    data: TrialData
    model: torch.nn.Module  # the LlamaForCausalLM (what is saved)
    forward_model: torch.nn.Module  # the compiled view used for training steps
    optimizer: torch.optim.Optimizer
    device: torch.device
    bf16: bool
    micro_batch: int
    rank: int
    world_size: int
    steps: int
    warmup: int
    progress: ckpt.Progress
    activation_checkpointing: bool = False
    oom_retries: int = 0
    last_loss: float | None = None

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


def _load_data(config: dict, rank: int, world: int, device: torch.device) -> TrialData:
    """Rank 0 prepares the trial's data (token store) while the others wait, then they open it.

    The token store also takes a file lock; the barrier makes the order explicit and keeps the
    other ranks from each stat-ing and hashing shards while rank 0 builds.  An error on rank 0
    is raised on every rank (they load after the barrier and meet it too), never a hang.
    """
    if world == 1:
        return load_trial_data(config)
    data, error = None, None
    if rank == 0:
        try:
            data = load_trial_data(config)
        except Exception as exc:  # noqa: BLE001 - re-raised after the barrier
            error = exc
    _barrier(device)
    if error is not None:
        raise error
    return data if data is not None else load_trial_data(config)


def _setup(config: dict, data: TrialData | None, options: RuntimeOptions, rank: int, world: int):
    device = resolve_device(options.device)
    precision = config.get("train", {}).get("precision", "auto")
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if options.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(int(config["seed"]))
    data = data if data is not None else _load_data(config, rank, world, device)
    shape = ModelShape(**config["model"])
    model = build_model(shape, data.n_units, int(config["context"])).to(device)
    optimizer = build_optimizer(model, config["optimizer"], device)
    use_compile = options.compile if options.compile is not None else device.type == "cuda"
    forward_model = torch.compile(model) if use_compile else model
    batch = int(config["batch_size"])
    steps = math.ceil(int(config["tokens"]) / (batch * int(config["context"])))
    opt = config["optimizer"]
    per_worker = math.ceil(batch / world)
    run = _Run(
        config=config,
        data=data,
        model=model,
        forward_model=forward_model,
        optimizer=optimizer,
        device=device,
        bf16=bf16,
        micro_batch=min(options.micro_batch_size or per_worker, per_worker),
        rank=rank,
        world_size=world,
        steps=steps,
        warmup=warmup_steps(steps, opt["warmup_min_steps"], opt["warmup_fraction"]),
        progress=ckpt.Progress(),
    )
    if options.activation_checkpointing:
        run.enable_activation_checkpointing()
    return run


def _resume(run: _Run, sources, warn) -> None:
    """Restore the newest usable checkpoint, with the memory settings it learned."""
    progress = ckpt.restore(sources, run.model, run.optimizer, warn)
    if progress is None:
        return
    run.progress = progress
    if progress.micro_batch:
        run.micro_batch = min(run.micro_batch, progress.micro_batch)
    if progress.activation_checkpointing and not run.activation_checkpointing:
        run.enable_activation_checkpointing()


def _checkpoint(run: _Run, directory: Path | None, on_checkpoint: OnCheckpoint, keep) -> None:
    if directory is None:
        return
    path = None
    if run.rank == 0:
        run.progress.micro_batch = run.micro_batch
        run.progress.activation_checkpointing = run.activation_checkpointing
        path = ckpt.save_into(directory, run.model, run.optimizer, run.progress, keep=keep)
    on_checkpoint(path, run.progress.tokens_seen)


def train_one_trial(
    config: dict,
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
    faults: FaultInjection | None = None,
    keep_checkpoints: int | None = ckpt.KEEP,
    warn: Callable[[str], None] = _stderr,
) -> TrialResult:
    """Train one resolved trial config (slmscale.grid.expand.Trial.config) to exactly D tokens.

    Checkpoints go to `checkpoint_dir/ckpt-<step>` (the newest `keep_checkpoints` kept; None keeps
    all, for a caller that uploads and deletes them, e.g. Ray Train).  Resumes from the newest
    usable checkpoint of `resume_from` (a checkpoint folder, a root of them, or an iterable of
    folders newest first; default: `checkpoint_dir`).  A non-finite loss ends the trial with
    status FAILED and the reason; nothing is raised.  With `output_dir`, rank 0 saves the final
    model there as `model/` (save_pretrained).
    """
    options, faults = options or RuntimeOptions(), faults or FaultInjection()
    report, on_checkpoint = reporter or _noop, on_checkpoint or _noop
    run = _setup(config, data, options, rank, world_size)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    resume_from = resume_from if resume_from is not None else checkpoint_dir
    if isinstance(resume_from, (str, Path)):
        resume_from = ckpt.candidates(resume_from)
    _resume(run, resume_from or [], warn)
    failure = _train_loop(
        run, report, checkpoint_dir, on_checkpoint, options, faults, keep_checkpoints, warn
    )
    if failure is not None:
        return _result(run, "FAILED", failure, None)
    test_loss = evaluate_test_loss(run)
    stream = run.data.stream
    assert run.progress.tokens_seen == stream.tokens, (run.progress.tokens_seen, stream.tokens)
    result = _result(run, "FINISHED", None, test_loss)
    report(_final_metrics(run, result), run.progress.tokens_seen)
    if run.config.get("benchmarks"):
        result.downstream, result.eval_details = score_spread(run)
    if rank == 0:
        _finish_outputs(run, result, output_dir)
        if result.downstream:
            report(result.downstream, run.progress.tokens_seen)
    return result


@dataclass
class _Window:
    """What accumulates between two flush points."""

    losses: list = field(default_factory=list)  # (device loss sum of this rank, n_targets, step)
    tokens: int = 0
    started: float = field(default_factory=time.perf_counter)


def _train_loop(
    run, report, checkpoint_dir, on_checkpoint, options, faults, keep, warn
) -> str | None:
    """Steps until D tokens; returns a failure reason, or None when the budget is reached."""
    shape, context = ModelShape(**run.config["model"]), run.data.stream.context
    n_params = non_embedding_params(shape)
    peak = _peak(run)
    interval = eval_interval(run)
    sample = periodic_test_windows(
        run.data.test, periodic_eval_budget(run, options.periodic_eval_cost), context
    )
    sample_tokens = sum(len(w) for w in sample)
    log_tokens, log_seconds, log_losses = 0, 0.0, []
    last_checkpoint = time.monotonic()
    window = _Window()
    batch: StepBatch | None = None
    if run.progress.step < run.steps:
        batch = prepare_step(run, run.progress.step, run.micro_batch)
    while run.progress.step < run.steps:
        if faults.raise_at_step == run.progress.step:
            raise InjectedFault(f"injected failure before step {run.progress.step}")
        if faults.kill_at_step == run.progress.step and faults.kill_marker:
            _kill_once(Path(faults.kill_marker))
        loss_sum, batch = train_step(run, batch, faults, warn)
        window.losses.append((loss_sum, batch.n_targets, run.progress.step))
        window.tokens += batch.tokens
        run.progress.step += 1
        run.progress.tokens_seen += batch.tokens
        step, seen = run.progress.step, run.progress.tokens_seen
        batch = prepare_step(run, step, run.micro_batch) if step < run.steps else None
        log_due = step % options.log_every_steps == 0 or step == run.steps
        eval_due = step % interval == 0 and step < run.steps
        every = options.checkpoint_every_steps
        step_ckpt_due = every is not None and step % every == 0 and step < run.steps
        if not (log_due or eval_due or step_ckpt_due):
            continue
        # Flush: one host sync for the whole window of steps.
        wants_time_ckpt = (
            every is None
            and run.rank == 0
            and time.monotonic() - last_checkpoint >= 60.0 * options.checkpoint_every_minutes
        )
        sums = [s for s, _, _ in window.losses]
        reduced = run.all_reduce(*torch.stack(sums).double().tolist(), float(wants_time_ckpt))
        seconds = time.perf_counter() - window.started
        run.progress.train_seconds += seconds
        per_step = [r / max(n, 1) for r, (_, n, _) in zip(reduced[:-1], window.losses, strict=True)]
        for loss, (_, _, s) in zip(per_step, window.losses, strict=True):
            if not math.isfinite(loss):
                return f"non-finite train loss ({loss}) at step {s} after {seen:,} tokens"
        run.last_loss = per_step[-1]
        log_losses += per_step
        log_tokens += window.tokens
        log_seconds += seconds
        if log_due:
            tps = log_tokens / max(log_seconds, 1e-9)
            metrics = {
                M_TRAIN_LOSS: float(np.mean(log_losses)),
                M_LR: run.optimizer.param_groups[0]["lr"],
                M_FLOPS: 6.0 * n_params * seen,
                M_TOKENS_PER_SEC: tps,
            }
            util = mfu(tps, shape, context, peak, run.world_size)
            if util is not None:
                metrics[M_MFU] = util
            report(metrics, seen)
            log_tokens, log_seconds, log_losses = 0, 0.0, []
        if eval_due:
            loss = evaluate_test_loss(run, sample)
            run.progress.periodic_eval_tokens += sample_tokens
            report({M_TEST_LOSS: loss, M_FLOPS: 6.0 * n_params * seen}, seen)
        time_ckpt_due = reduced[-1] > 0 and step < run.steps
        if step_ckpt_due or time_ckpt_due:
            _checkpoint(run, checkpoint_dir, on_checkpoint, keep)
            last_checkpoint = time.monotonic()
        window = _Window()
    return None


def _kill_once(marker: Path) -> None:
    import os
    import signal

    try:
        marker.touch(exist_ok=False)
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


def _peak(run: _Run) -> float | None:
    return peak_flops(torch.cuda.get_device_name(run.device)) if run.device.type == "cuda" else None


def _result(run: _Run, status: str, reason: str | None, test_loss: float | None) -> TrialResult:
    seen = run.progress.tokens_seen
    tps = seen / run.progress.train_seconds if run.progress.train_seconds > 0 else 0.0
    shape = ModelShape(**run.config["model"])
    context = run.data.stream.context
    train_flops = flops_per_token(shape, context) * max(seen, 1)
    eval_flops = flops_per_token(shape, context) / 3.0 * run.progress.periodic_eval_tokens
    return TrialResult(
        status=status,
        reason=reason,
        steps=run.progress.step,
        tokens_trained=seen,
        unique_tokens_seen=run.data.stream.unique_seen(seen),
        test_loss_final=test_loss,
        train_loss=run.last_loss,
        tokens_per_sec=tps,
        mfu=mfu(tps, shape, context, _peak(run), run.world_size),
        micro_batch=run.micro_batch,
        oom_retries=run.oom_retries,
        periodic_eval_tokens=run.progress.periodic_eval_tokens,
        periodic_eval_flops_fraction=eval_flops / train_flops,
    )


def _final_metrics(run: _Run, result: TrialResult) -> dict:
    """The end-of-trial metrics: final test loss, exact token accounting, average throughput."""
    shape = ModelShape(**run.config["model"])
    metrics = {
        M_TEST_LOSS: result.test_loss_final,
        M_TEST_LOSS_FINAL: result.test_loss_final,
        M_FLOPS: 6.0 * non_embedding_params(shape) * result.tokens_trained,
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
