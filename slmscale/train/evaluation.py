"""Test loss and downstream scores of a training trial (pure core: no Ray, no MLflow).

The periodic test loss scores a fixed sample of the test split sized so that all periodic
evaluations together cost at most a given share of the trial's training FLOPs; the final test
loss scores the whole split.  Downstream benchmarks are spread over the ranks.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from slmscale.corpus import IGNORE_INDEX, pad_batch
from slmscale.model import special_token_ids
from slmscale.train.step import nll_sum


@torch.no_grad()
def evaluate_test_loss(run, windows: list[np.ndarray] | None = None) -> float:
    """Mean token NLL over test windows (default: the whole test split), sharded over workers."""
    windows = run.data.test if windows is None else windows
    pad = special_token_ids(run.data.n_units)["pad"]
    run.model.eval()
    total = torch.zeros((), dtype=torch.float64, device=run.device)
    count = 0
    mine = windows[run.rank :: run.world_size]
    for i in range(0, len(mine), run.micro_batch):
        inputs, labels = pad_batch(mine[i : i + run.micro_batch], pad)
        x, y = torch.from_numpy(inputs).to(run.device), torch.from_numpy(labels).to(run.device)
        total += nll_sum(run, run.model, x, y).double()
        count += int((labels[:, 1:] != IGNORE_INDEX).sum())
    run.model.train()
    total_sum, count = run.all_reduce(float(total), count)
    return total_sum / count


def eval_interval(run) -> int:
    plan = run.trial.eval
    return plan.interval_steps or max(1, math.ceil(run.steps / plan.n_evals))


def periodic_test_windows(
    test: list[np.ndarray], budget_tokens: float, context: int
) -> list[np.ndarray]:
    """A fixed sample of the test windows holding about `budget_tokens` tokens: evenly spaced
    over the split (its sources and speakers come in order), the same at every evaluation."""
    total = sum(len(w) for w in test)
    if budget_tokens >= total:
        return test
    k = max(1, int(budget_tokens // context))
    idx = np.unique(np.linspace(0, len(test) - 1, k).round().astype(int))
    return [test[i] for i in idx]


def periodic_eval_budget(run, cost: float) -> float:
    """Test tokens per periodic evaluation so that all of them cost `cost` x training FLOPs.

    A forward pass is a third of a training step's FLOPs per token, so n_evals evaluations of
    E tokens cost n_evals x E / 3 training-token equivalents: E = 3 x cost x D / n_evals.
    """
    n_evals = max(1, (run.steps - 1) // eval_interval(run))
    return 3.0 * cost * run.data.stream.tokens / n_evals


def _item_counts(counts: dict[str, dict]) -> dict[str, float]:
    """`<metric>_n_items`: how many items each benchmark was scored on (the laws' chance test
    and the report's binomial intervals need it beside the accuracy)."""
    from slmscale.tracking.schema import BENCHMARK_METRICS, N_ITEMS_SUFFIX

    return {
        f"{BENCHMARK_METRICS[name]}{N_ITEMS_SUFFIX}": float(c["items_scored"])
        for name, c in counts.items()
        if name in BENCHMARK_METRICS and "items_scored" in c
    }


def score_spread(run) -> tuple[dict, dict]:
    """Downstream scores, the benchmarks spread over the ranks (rank r scores benchmarks r,
    r + world, ...; the trained weights are the same on every rank), gathered on every rank."""
    from slmscale.config.grid import BenchmarkSpec
    from slmscale.evaluate import score_benchmarks

    specs = [
        BenchmarkSpec(name=b.name, units=b.units, root=b.root, split=b.split, score=b.score)
        for b in run.trial.benchmarks
    ]
    mine = specs[run.rank :: run.world_size]
    part: tuple[dict, dict] = ({}, {})
    if mine:
        scored = score_benchmarks(
            run.model,
            mine,
            n_units=run.data.n_units,
            tokenizer_fingerprint=run.data.tokenizer_fingerprint,
            device=str(run.device),
        )
        part = (dict(scored.metrics) | _item_counts(scored.counts), dict(scored.details))
    parts = [part]
    if run.world_size > 1:
        parts = [None] * run.world_size
        torch.distributed.all_gather_object(parts, part)
    metrics, details = {}, {}
    for m, d in parts:
        metrics.update(m)
        details.update(d)
    return metrics, {b.name: details[b.name] for b in specs if b.name in details}
