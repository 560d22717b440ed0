"""Score a model on the downstream benchmarks: what every trial calls at its end.

`check_benchmarks` does everything that can fail because of the user's input (tokenizer mismatch,
missing gold files, no usable pair) without touching a model, so a trial can call it before it
trains; `score_benchmarks` calls it again, then scores.  Problems that cost pairs but not the whole
benchmark (a gold file missing from the units, a rejected file, empty units, a broken group) are
listed in `EvalResult.warnings` and the details, and the counts say how many pairs were used.

Pure core: no Ray, no MLflow.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from slmscale import units as units_io
from slmscale.errors import UserError
from slmscale.evaluate import metrics
from slmscale.evaluate.formats import BenchmarkPairs, Pair, load_pairs
from slmscale.evaluate.lookup import find_units
from slmscale.evaluate.scoring import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BATCH_TOKENS,
    score_sequences,
)
from slmscale.model import special_token_ids

if TYPE_CHECKING:  # pydantic stays out of the import path: the GPU bench machine lacks it
    from slmscale.config import BenchmarkSpec

log = logging.getLogger("slmscale.evaluate")
SHOW_FIRST = 5  # problems quoted in a warning line; all of them (up to MAX_LISTED) in details
MAX_LISTED = 100


@dataclass
class PreparedBenchmark:
    spec: BenchmarkSpec
    pairs: list[Pair]  # the pairs that can be scored
    units: dict[str, list[int]]  # stem -> units, for every member of `pairs`
    dropped: list[str]  # one line per pair (or group) left out, with the reason
    n_total: int
    fingerprint: str


@dataclass
class EvalResult:
    metrics: dict[str, float]  # sblimp_acc, sblimp_acc_sum, sblimp_acc_mean, ...
    details: dict[str, dict]  # per benchmark: counts, score used, breakdowns, problems (JSON-able)
    counts: dict[str, dict[str, int]]  # per benchmark: pairs_total, pairs_scored, items_scored
    warnings: list[str] = field(default_factory=list)

    def table(self) -> str:
        return metrics.format_table(self.details)


def _summarise(name: str, dropped: list[str], total: int) -> str:
    shown = "; ".join(dropped[:SHOW_FIRST])
    more = f"; ... (+{len(dropped) - SHOW_FIRST} more)" if len(dropped) > SHOW_FIRST else ""
    return f"{name}: {len(dropped)} of {total} pairs dropped: {shown}{more}"


def _check_tokenizer(spec: BenchmarkSpec, n_units: int, expected: str | None) -> str:
    meta = units_io.load_meta(spec.units)
    fingerprint = units_io.tokenizer_fingerprint(meta)
    if expected is not None and fingerprint != expected:
        raise UserError(
            f"{spec.units}: {spec.name} units were made by a different tokenizer "
            f"(fingerprint {fingerprint}) than the model's training data ({expected}); "
            "re-tokenize the benchmark with the same encoder and k-means"
        )
    if meta.get("n_units") is not None and int(meta["n_units"]) != n_units:
        raise UserError(
            f"{spec.units}: {spec.name} units have K={meta['n_units']} but the model has "
            f"{n_units} units; re-tokenize the benchmark with the model's tokenizer"
        )
    return fingerprint


def _usable_pairs(
    bench: BenchmarkPairs, found: dict[str, list[int]], missing: dict[str, str], n_units: int
) -> tuple[list[Pair], list[str]]:
    pairs, dropped = [], []
    for pair in bench.pairs:
        reasons = [f"{s} {missing[s]}" for s in (pair.pos, pair.neg) if s in missing]
        reasons += [f"{s} has empty units" for s in (pair.pos, pair.neg) if found.get(s) == []]
        bad = [s for s in (pair.pos, pair.neg) if any(u >= n_units for u in found.get(s, []))]
        reasons += [f"{s} has unit ids >= K={n_units}" for s in bad]
        if reasons:
            dropped.append(f"{'/'.join(pair.item)} voice {pair.voice}: " + ", ".join(reasons))
        else:
            pairs.append(pair)
    return pairs, dropped


def prepare_benchmark(
    spec: BenchmarkSpec, *, n_units: int, tokenizer_fingerprint: str | None
) -> PreparedBenchmark:
    fingerprint = _check_tokenizer(spec, n_units, tokenizer_fingerprint)
    bench = load_pairs(spec.name, spec.root, spec.split)
    wanted = {s for p in bench.pairs for s in (p.pos, p.neg)}
    found, missing = find_units(spec.units, sorted(wanted), spec.split)
    pairs, dropped = _usable_pairs(bench, found, missing, n_units)
    dropped = bench.problems + dropped
    if not pairs:
        detail = _summarise(spec.name, dropped, bench.n_total) if dropped else "no pairs defined"
        raise UserError(
            f"{bench.source}: no {spec.name} pair could be scored with units {spec.units} "
            f"({detail})"
        )
    units = {s: found[s] for p in pairs for s in (p.pos, p.neg)}
    return PreparedBenchmark(spec, pairs, units, dropped, bench.n_total, fingerprint)


def check_benchmarks(
    benchmarks: Sequence[BenchmarkSpec], *, n_units: int, tokenizer_fingerprint: str | None
) -> list[PreparedBenchmark]:
    """Validate every benchmark (no model needed): call before training to fail early."""
    names = [b.name for b in benchmarks]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"benchmarks: {', '.join(dup)} given more than once (one split each)")
    return [
        prepare_benchmark(b, n_units=n_units, tokenizer_fingerprint=tokenizer_fingerprint)
        for b in benchmarks
    ]


def _evaluate(prep: PreparedBenchmark, sums: dict, means: dict, truncated: int) -> dict:
    """The details of one benchmark from the per-utterance scores."""
    name, spec = prep.spec.name, prep.spec
    default = metrics.DEFAULT_SCORE[name]
    mode = spec.score or default
    d: dict = {
        "split": spec.split,
        "units": spec.units,
        "root": spec.root,
        "score": mode,
        "score_default": default,
        "score_rule": metrics.SCORE_REFERENCE[mode],
        "tie_rule": "1 if the positive scores higher, 0.5 on a tie, else 0",
        "pairs_total": prep.n_total,
        "pairs_scored": len(prep.pairs),
        "pairs_dropped": len(prep.dropped),
        "truncated_utterances": truncated,
        "tokenizer_fingerprint": prep.fingerprint,
    }
    for m, table in (("sum", sums), ("mean", means)):
        outcomes = [metrics.pair_outcome(table[p.pos], table[p.neg]) for p in prep.pairs]
        items = metrics.item_scores(prep.pairs, outcomes)
        d[f"acc_{m}"] = sum(items.values()) / len(items)
        if m == mode:
            d["acc"], d["items_scored"] = d[f"acc_{m}"], len(items)
            if name == "sblimp":
                d["by_type"] = metrics.breakdown(items, 1)
                d["by_subtype"] = metrics.breakdown(items, 2)
        if name == "swuggy":
            bands = metrics.by_frequency(prep.pairs, items)
            d[f"acc_invocab_{m}"], n_invocab = metrics.invocab_accuracy(bands)
            if m == mode:
                d["by_frequency"] = bands
                d["acc_invocab"], d["items_invocab"] = d[f"acc_invocab_{m}"], n_invocab
    d["problems"] = prep.dropped[:MAX_LISTED]
    return d


def score_benchmarks(
    model,
    benchmarks: Sequence[BenchmarkSpec],
    *,
    n_units: int,
    tokenizer_fingerprint: str | None,
    device="cpu",
    max_batch_tokens: int = DEFAULT_BATCH_TOKENS,
    max_batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch=None,
) -> EvalResult:
    """Accuracy of `model` on each benchmark (metrics named by tracking.schema.BENCHMARK_METRICS).

    `model` returns `.logits` for `input_ids`/`attention_mask`, lives on `device`, and has the
    vocabulary of `n_units` units + PAD/BOS/EOS.  `tokenizer_fingerprint` is the training data's
    `units.tokenizer_fingerprint(meta)`; benchmark units made otherwise are refused (None: no check).
    """
    prepared = check_benchmarks(
        benchmarks, n_units=n_units, tokenizer_fingerprint=tokenizer_fingerprint
    )
    special = special_token_ids(n_units)
    result = EvalResult(metrics={}, details={}, counts={})
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        for prep in prepared:
            names = sorted(prep.units)
            scores = score_sequences(
                model,
                [prep.units[s] for s in names],
                bos_id=special["bos"],
                pad_id=special["pad"],
                device=device,
                max_batch_tokens=max_batch_tokens,
                max_batch_size=max_batch_size,
                on_batch=on_batch,
            )
            sums = dict(zip(names, scores.sums.tolist(), strict=True))
            means = dict(zip(names, scores.means.tolist(), strict=True))
            name = prep.spec.name
            d = _evaluate(prep, sums, means, scores.truncated)
            result.details[name] = d
            result.metrics[metrics.metric_name(name)] = d["acc"]
            for m in metrics.SCORE_MODES:
                result.metrics[metrics.metric_name(name, m)] = d[f"acc_{m}"]
            if d.get("acc_invocab") is not None:
                result.metrics[metrics.metric_name(name, metrics.INVOCAB)] = d["acc_invocab"]
            result.counts[name] = {
                k: d[k] for k in ("pairs_total", "pairs_scored", "pairs_dropped", "items_scored")
            }
            if prep.dropped:
                result.warnings.append(_summarise(name, prep.dropped, prep.n_total))
            if scores.truncated:
                result.warnings.append(
                    f"{name}: {scores.truncated} utterances longer than the model's context "
                    "were truncated from the left"
                )
    finally:
        model.train(was_training)
    for w in result.warnings:
        log.warning(w)
    return result
