"""Downstream evaluation: benchmark loaders and batched pair scoring (pure core: no Ray, no MLflow).

    from slmscale.evaluate import score_benchmarks, EvalResult
    result = score_benchmarks(model, spec.benchmarks, n_units=500, tokenizer_fingerprint=fp)
    result.metrics   # {"sblimp_acc": ..., "sblimp_acc_sum": ..., "sblimp_acc_mean": ..., ...}

See docs/evaluate.md for the benchmark layouts, the scores and the tie rule.
"""

from slmscale.evaluate.benchmark import (
    EvalResult,
    PreparedBenchmark,
    check_benchmarks,
    score_benchmarks,
)
from slmscale.evaluate.formats import BenchmarkPairs, Pair, load_pairs
from slmscale.evaluate.identity import benchmark_digest, pairs_digest
from slmscale.evaluate.metrics import DEFAULT_SCORE, SCORE_MODES, metric_name, pair_outcome
from slmscale.evaluate.scoring import SequenceScores, score_sequences

__all__ = [
    "DEFAULT_SCORE",
    "SCORE_MODES",
    "BenchmarkPairs",
    "EvalResult",
    "Pair",
    "PreparedBenchmark",
    "SequenceScores",
    "benchmark_digest",
    "check_benchmarks",
    "load_pairs",
    "metric_name",
    "pairs_digest",
    "pair_outcome",
    "score_benchmarks",
    "score_sequences",
]
