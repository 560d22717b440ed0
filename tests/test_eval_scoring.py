"""Sequence log-likelihood: exact values under a known bigram LM, batching, truncation."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from test_eval_fixtures import SPECIAL, BigramLM, bigram_logp, bigram_table

from slmscale.evaluate.scoring import plan_batches, score_sequences
from slmscale.model import ModelShape, build_model

SEQS = [[0], [1, 1, 1], [2, 3], [3, 0, 1, 2, 2, 0], [1], [0, 0, 0, 0, 0, 0, 0, 3]]


def _score(model, seqs, **kw):
    return score_sequences(model, seqs, bos_id=SPECIAL["bos"], pad_id=SPECIAL["pad"], **kw)


def test_sums_and_means_match_the_chain_rule_by_hand():
    out = _score(BigramLM(), SEQS, max_batch_tokens=12, max_batch_size=3)
    # [0]: log p(0|BOS) = log .25; [1,1,1]: log .5 + 2 log .5
    assert out.sums[0] == pytest.approx(math.log(0.25), abs=1e-6)
    assert out.sums[1] == pytest.approx(3 * math.log(0.5), abs=1e-6)
    assert out.sums[2] == pytest.approx(math.log(0.125) + math.log(0.2), abs=1e-6)
    for i, s in enumerate(SEQS):
        assert out.sums[i] == pytest.approx(bigram_logp(s), abs=1e-5)
        assert out.counts[i] == len(s)
        assert out.means[i] == pytest.approx(bigram_logp(s) / len(s), abs=1e-5)
    assert out.truncated == 0


def test_same_result_alone_or_batched_bigram_exactly():
    model = BigramLM()
    batched = _score(model, SEQS, max_batch_tokens=10_000, max_batch_size=64)
    for i, s in enumerate(SEQS):
        alone = _score(model, [s])
        assert alone.sums[0] == batched.sums[i]
    shuffled = list(range(len(SEQS)))
    random.Random(3).shuffle(shuffled)
    again = _score(model, [SEQS[i] for i in shuffled], max_batch_tokens=9, max_batch_size=2)
    assert np.array_equal(again.sums, batched.sums[shuffled])


def test_same_result_alone_or_batched_llama():
    torch.manual_seed(0)
    model = build_model(ModelShape("tiny", 2, 32, 2), n_units=4, context=64).eval()
    batched = _score(model, SEQS, max_batch_tokens=10_000)
    alone = np.array([_score(model, [s]).sums[0] for s in SEQS])
    assert np.allclose(batched.sums, alone, atol=1e-4, rtol=0)
    assert np.all(np.isfinite(batched.sums)) and np.all(batched.sums < 0)
    repeat = _score(model, SEQS, max_batch_tokens=10_000)
    assert np.array_equal(repeat.sums, batched.sums)  # deterministic


def test_long_sequences_are_truncated_from_the_left():
    seq = [0, 1, 2, 3, 3, 2, 1, 0, 1, 1]
    out = _score(BigramLM(), [seq, [0]], max_positions=5)
    # BOS + last 4 units: 1, 0, 1, 1
    assert out.truncated == 1
    assert out.counts.tolist() == [4, 1]
    assert out.sums[0] == pytest.approx(bigram_logp([1, 0, 1, 1]), abs=1e-6)


def test_padding_masks_minus_infinity_without_nan():
    # PAD targets have probability 0 under the table (log = -inf); masked positions must not leak
    assert bigram_table()[0, SPECIAL["pad"]] == 0
    out = _score(BigramLM(), [[0], [0, 1, 1, 1, 1]])
    assert np.all(np.isfinite(out.sums))


def test_batches_are_sorted_by_length_and_respect_the_token_budget():
    lengths = [3, 10, 5, 10, 2, 7]
    batches = plan_batches(lengths, max_tokens=20, max_size=8)
    assert [i for b in batches for i in b] == [1, 3, 5, 2, 0, 4]
    for b in batches:
        assert len(b) * max(lengths[i] for i in b) <= 20 or len(b) == 1
    assert plan_batches([50], max_tokens=8, max_size=4) == [[0]]
    assert [len(b) for b in plan_batches([1] * 10, max_tokens=100, max_size=4)] == [4, 4, 2]
