"""`train_one_trial`: one grid point, start to finish, in plain PyTorch (no Ray, no MLflow).

The Ray Train worker and `slmscale train` both call this; a unit test calls it directly.  What
the outside world sees goes through two callbacks: `reporter(metrics, step)` (step = tokens
seen, DESIGN.md "MLflow run schema") and `on_checkpoint(path | None, tokens_seen)` (every rank
calls it; rank 0 passes the checkpoint it just wrote).

Loss normalisation: a step's loss is the summed token NLL of the whole batch divided by its
number of target tokens, so micro-batching changes nothing but memory.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from slmscale.corpus import IGNORE_INDEX, TrialData, load_trial_data, pad_batch
from slmscale.grid.expand import warmup_steps
from slmscale.model import ModelShape, build_model, non_embedding_params, special_token_ids
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
from slmscale.train.optim import build_optimizer
from slmscale.train.schedule import lr_at
from slmscale.train.throughput import mfu, peak_flops

Reporter = Callable[[dict, int], None]
OnCheckpoint = Callable[[Path | None, int], None]


@dataclass(frozen=True)
class RuntimeOptions:
    """How (not what) to train: none of this changes the trial's identity or its result."""

    checkpoint_every_steps: int = 200
    log_every_steps: int = 10
    deterministic: bool = False
    compile: bool = False
    micro_batch_size: int | None = None  # sequences per forward pass on one worker
    device: str | None = None  # None: CUDA when torch sees it, else CPU


@dataclass(frozen=True)
class FaultInjection:
    """Test-only hooks: make step `nan_at_step` produce a NaN loss, or raise before `raise_at_step`."""

    nan_at_step: int | None = None
    raise_at_step: int | None = None


class InjectedFault(RuntimeError):
    """Raised by FaultInjection.raise_at_step (simulates a worker dying mid-trial)."""


@dataclass
class TrialResult:
    status: str  # FINISHED | FAILED
    reason: str | None
    steps: int
    tokens_trained: int
    unique_tokens_seen: int
    test_loss_final: float | None
    train_loss: float | None
    tokens_per_sec: float
    mfu: float | None
    downstream: dict = field(default_factory=dict)
    eval_details: dict | None = None
    model_dir: Path | None = None


def _noop(*_args) -> None:
    return None


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
    model: torch.nn.Module  # the unwrapped LlamaForCausalLM (what is saved)
    forward_model: torch.nn.Module  # compiled and/or DDP-wrapped view used for training
    optimizer: torch.optim.Optimizer
    device: torch.device
    bf16: bool
    micro_batch: int
    rank: int
    world_size: int
    steps: int
    warmup: int
    progress: ckpt.Progress
    last_loss: float | None = None

    def autocast(self):
        if not self.bf16:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def nll_sum(self, model, windows: list[np.ndarray]) -> tuple[torch.Tensor, int]:
        """Summed next-token NLL of some windows, and the number of target tokens."""
        pad = special_token_ids(self.data.n_units)["pad"]
        inputs, labels = pad_batch(windows, pad)
        x = torch.from_numpy(inputs).to(self.device)
        y = torch.from_numpy(labels).to(self.device)
        with self.autocast():
            logits = model(input_ids=x).logits
        loss = F.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.size(-1)),
            y[:, 1:].reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        return loss, int((y[:, 1:] != IGNORE_INDEX).sum())

    def all_reduce(self, *values: float) -> list[float]:
        if self.world_size == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.tolist()


def _setup(config: dict, data: TrialData | None, options: RuntimeOptions, rank: int, world: int):
    device = resolve_device(options.device)
    precision = config.get("train", {}).get("precision", "auto")
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if options.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(int(config["seed"]))
    data = data if data is not None else load_trial_data(config)
    shape = ModelShape(**config["model"])
    model = build_model(shape, data.n_units, int(config["context"])).to(device)
    optimizer = build_optimizer(model, config["optimizer"], device)
    forward_model = torch.compile(model) if options.compile else model
    if world > 1:
        forward_model = torch.nn.parallel.DistributedDataParallel(
            forward_model, device_ids=[device.index] if device.type == "cuda" else None
        )
    batch = int(config["batch_size"])
    steps = math.ceil(int(config["tokens"]) / (batch * int(config["context"])))
    opt = config["optimizer"]
    per_worker = math.ceil(batch / world)
    return _Run(
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


def _train_step(run: _Run, faults: FaultInjection) -> tuple[float, int]:
    """One optimizer step over the step's windows; returns (global mean loss, tokens in step)."""
    step, stream, batch = run.progress.step, run.data.stream, int(run.config["batch_size"])
    opt = run.config["optimizer"]
    lr = lr_at(
        step, steps=run.steps, warmup_steps=run.warmup, lr_max=opt["lr_max"], lr_min=opt["lr_min"]
    )
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    first, last = step * batch, min((step + 1) * batch, stream.n_windows)
    mine = [stream.window(w) for w in range(first + run.rank, last, run.world_size)]
    n_targets = sum(len(w) - 1 for w in mine)
    chunks = [mine[i : i + run.micro_batch] for i in range(0, len(mine), run.micro_batch)]
    loss_total = 0.0
    for i, chunk in enumerate(chunks):
        sync = i == len(chunks) - 1 or run.world_size == 1
        no_sync = getattr(run.forward_model, "no_sync", None)
        with nullcontext() if sync or no_sync is None else no_sync():
            loss_sum, _ = run.nll_sum(run.forward_model, chunk)
            if faults.nan_at_step == step:
                loss_sum = loss_sum * float("nan")
            (loss_sum / max(n_targets, 1)).backward()
            loss_total += float(loss_sum.detach())
    clip = opt.get("grad_clip", 0.0)
    if clip:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), clip)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    loss_sum, targets = run.all_reduce(loss_total, n_targets)
    tokens = min((step + 1) * batch * stream.context, stream.tokens) - first * stream.context
    return loss_sum / max(targets, 1), tokens


@torch.no_grad()
def evaluate_test_loss(run: _Run) -> float:
    """Mean token NLL over the held-out test windows (sharded over workers)."""
    run.model.eval()
    total, count = 0.0, 0
    mine = run.data.test[run.rank :: run.world_size]
    for i in range(0, len(mine), run.micro_batch):
        loss_sum, n = run.nll_sum(run.model, mine[i : i + run.micro_batch])
        total, count = total + float(loss_sum), count + n
    run.model.train()
    total, count = run.all_reduce(total, count)
    return total / count


def _eval_interval(run: _Run) -> int:
    ev = run.config.get("eval", {})
    return ev.get("interval_steps") or max(1, math.ceil(run.steps / ev.get("n_evals", 20)))


def _checkpoint(run: _Run, directory: Path | None, on_checkpoint: OnCheckpoint) -> None:
    if directory is None:
        return
    path = None
    if run.rank == 0:
        path = ckpt.save_checkpoint(directory, run.model, run.optimizer, run.progress)
    on_checkpoint(path, run.progress.tokens_seen)


def train_one_trial(
    config: dict,
    data: TrialData | None = None,
    reporter: Reporter | None = None,
    *,
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    output_dir: str | Path | None = None,
    options: RuntimeOptions | None = None,
    on_checkpoint: OnCheckpoint | None = None,
    rank: int = 0,
    world_size: int = 1,
    faults: FaultInjection | None = None,
) -> TrialResult:
    """Train one resolved trial config (slmscale.grid.expand.Trial.config) to exactly D tokens.

    Resumes from `resume_from` (default: `checkpoint_dir`) when it holds a checkpoint.  A
    non-finite loss ends the trial with status FAILED and the reason; nothing is raised.
    With `output_dir`, rank 0 saves the final model there as `model/` (save_pretrained).
    """
    options, faults = options or RuntimeOptions(), faults or FaultInjection()
    report, on_checkpoint = reporter or _noop, on_checkpoint or _noop
    run = _setup(config, data, options, rank, world_size)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    resume_from = resume_from if resume_from is not None else checkpoint_dir
    if ckpt.has_checkpoint(resume_from):
        run.progress = ckpt.load_checkpoint(resume_from, run.model, run.optimizer)
    failure = _train_loop(run, report, checkpoint_dir, on_checkpoint, options, faults)
    if failure is not None:
        return _result(run, "FAILED", failure, None)
    test_loss = evaluate_test_loss(run)
    stream = run.data.stream
    assert run.progress.tokens_seen == stream.tokens, (run.progress.tokens_seen, stream.tokens)
    result = _result(run, "FINISHED", None, test_loss)
    report(_final_metrics(run, result), run.progress.tokens_seen)
    if rank == 0:
        _finish_outputs(run, result, output_dir)
        if result.downstream:
            report(result.downstream, run.progress.tokens_seen)
    return result


def _train_loop(run, report, checkpoint_dir, on_checkpoint, options, faults) -> str | None:
    """Steps until D tokens; returns a failure reason, or None when the budget is reached."""
    shape, context = ModelShape(**run.config["model"]), run.data.stream.context
    n_params = non_embedding_params(shape)
    peak = _peak(run)
    interval, losses, window_seconds, window_tokens = _eval_interval(run), [], 0.0, 0
    while run.progress.step < run.steps:
        if faults.raise_at_step == run.progress.step:
            raise InjectedFault(f"injected failure before step {run.progress.step}")
        t0 = time.perf_counter()
        loss, tokens = _train_step(run, faults)
        dt = time.perf_counter() - t0
        run.progress.train_seconds += dt
        window_seconds += dt
        run.progress.step += 1
        run.progress.tokens_seen += tokens
        if not math.isfinite(loss):
            return (
                f"non-finite train loss ({loss}) at step {run.progress.step - 1} "
                f"after {run.progress.tokens_seen:,} tokens"
            )
        losses.append(loss)
        run.last_loss = loss
        window_tokens += tokens
        step, seen = run.progress.step, run.progress.tokens_seen
        if step % options.log_every_steps == 0 or step == run.steps:
            tps = window_tokens / max(window_seconds, 1e-9)
            metrics = {
                M_TRAIN_LOSS: float(np.mean(losses)),
                M_LR: run.optimizer.param_groups[0]["lr"],
                M_FLOPS: 6.0 * n_params * seen,
                M_TOKENS_PER_SEC: tps,
            }
            util = mfu(tps, shape, context, peak, run.world_size)
            if util is not None:
                metrics[M_MFU] = util
            report(metrics, seen)
            losses, window_seconds, window_tokens = [], 0.0, 0
        if step % interval == 0 and step < run.steps:
            report({M_TEST_LOSS: evaluate_test_loss(run), M_FLOPS: 6.0 * n_params * seen}, seen)
        if step % options.checkpoint_every_steps == 0 and step < run.steps:
            _checkpoint(run, checkpoint_dir, on_checkpoint)
    return None


def _peak(run: _Run) -> float | None:
    return peak_flops(torch.cuda.get_device_name(run.device)) if run.device.type == "cuda" else None


def _result(run: _Run, status: str, reason: str | None, test_loss: float | None) -> TrialResult:
    seen = run.progress.tokens_seen
    tps = seen / run.progress.train_seconds if run.progress.train_seconds > 0 else 0.0
    shape = ModelShape(**run.config["model"])
    return TrialResult(
        status=status,
        reason=reason,
        steps=run.progress.step,
        tokens_trained=seen,
        unique_tokens_seen=run.data.stream.unique_seen(seen),
        test_loss_final=test_loss,
        train_loss=run.last_loss,
        tokens_per_sec=tps,
        mfu=mfu(tps, shape, run.data.stream.context, _peak(run), run.world_size),
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
    """Rank 0: downstream scores (when benchmarks are configured) and the saved final model."""
    benchmarks = run.config.get("benchmarks") or []
    if benchmarks:
        from slmscale.config.grid import BenchmarkSpec
        from slmscale.evaluate import score_benchmarks

        scored = score_benchmarks(
            run.model,
            [BenchmarkSpec(**b) for b in benchmarks],
            n_units=run.data.n_units,
            tokenizer_fingerprint=run.data.tokenizer_fingerprint,
            device=str(run.device),
        )
        result.downstream = dict(scored.metrics)
        result.eval_details = scored.details
    if output_dir is not None:
        result.model_dir = Path(output_dir) / "model"
        run.model.save_pretrained(result.model_dir)
