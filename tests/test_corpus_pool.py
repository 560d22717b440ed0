"""A trial's pool is a prefix of the token store, and the store is what the slow references say.

- One source: the prefix is byte-identical to the per-trial pool of earlier versions.
- Several sources: the store is the greedy weighted merge of the seed-shuffled sources.
- The test split, a pool ending mid-utterance, the cache folder, and the loader's memory.
"""

from __future__ import annotations

import os
import tracemalloc

import numpy as np
import pytest
from _units_data import (
    N_UNITS,
    ref_pack,
    ref_utterances,
    reference_pool,
    reference_store,
    write_units,
)

import slmscale.tokenstore.build as store_build
from slmscale import tokenstore
from slmscale.corpus import open_data
from slmscale.model import special_token_ids
from slmscale.trial import DataSource


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("units")
    write_units(root / "big", shards=5, rows_per_shard=60, seed=1)
    write_units(root / "small", shards=3, rows_per_shard=9, seed=2)
    return root / "big", root / "small"


def _store(data, seed, tmp_path):
    return tokenstore.ensure_store(data, N_UNITS, seed, tmp_path / "stores")


def _pool(data, unique, seed, cache_dir=None):
    """A trial's U_D unique tokens: the first `unique` tokens of the store."""
    return tokenstore.ensure_store(data, N_UNITS, seed, cache_dir).prefix(unique)


@pytest.mark.parametrize("batch_rows", [4096, 7])
@pytest.mark.parametrize(
    ("datasets", "fraction", "seed"), [(None, 0.5, 0), (None, 0.999, 7), (["b"], 0.3, 3)]
)
def test_one_source_prefix_equals_the_old_pool(
    two_sources, tmp_path, monkeypatch, datasets, fraction, seed, batch_rows
):
    monkeypatch.setattr(store_build, "_BATCH_ROWS", batch_rows)  # batches across shard rows, too
    data = [{"path": str(two_sources[0]), "datasets": datasets}]
    store = _store(data, seed, tmp_path)
    for unique in {int(store.n_tokens * fraction), int(store.n_tokens * fraction) - 1}:
        expected = reference_pool(data, unique, N_UNITS, seed)
        pool = _pool(data, unique, seed, cache_dir=tmp_path / "stores")
        assert isinstance(pool, np.memmap) and pool.dtype == np.uint16
        assert len(pool) == len(expected) == unique
        assert pool.tobytes() == expected.tobytes()


MIXTURES = [  # (sources: (name, weight, datasets), seed)
    ([("big", None, None), ("small", None, None)], 0),  # proportional to size
    ([("big", 1.0, None), ("small", 3.0, None)], 5),  # small runs out early
    ([("small", 2.0, None), ("big", 0.5, ["a"])], 11),
    ([("big", None, ["b"]), ("small", None, ["a"])], 3),
]


@pytest.mark.parametrize("batch_rows", [4096, 7])
@pytest.mark.parametrize(("srcs", "seed"), MIXTURES)
def test_mixture_store_equals_greedy_merge(
    two_sources, tmp_path, monkeypatch, srcs, seed, batch_rows
):
    monkeypatch.setattr(store_build, "_BATCH_ROWS", batch_rows)
    paths = dict(zip(("big", "small"), two_sources, strict=True))
    data = [{"path": str(paths[n]), "weight": w, "datasets": d} for n, w, d in srcs]
    store = _store(data, seed, tmp_path)
    expected = reference_store(data, N_UNITS, seed)
    assert store.tokens.tobytes() == expected.tobytes()
    # the index: utterance boundaries land on BOS, and each source's count adds up
    starts = np.load(store.path / tokenstore.UTTS_FILE)
    assert starts[-1] == store.n_tokens and np.all(store.tokens[starts[:-1]] == N_UNITS + 1)
    assert store.source_tokens(store.n_tokens).tolist() == store.capacity


def test_pool_ends_mid_utterance(two_sources, tmp_path):
    data = [{"path": str(two_sources[0])}]
    utts = ref_utterances(two_sources[0], None, test=False)
    order = np.random.default_rng([4, 1, 0]).permutation(len(utts))
    k = next(k for k in range(1, len(order)) if len(utts[order[k]]) > 4)
    unique = sum(len(utts[j]) + 2 for j in order[:k]) + 5  # BOS, 4 units of utterance k
    pool = _pool(data, unique, 4, cache_dir=tmp_path)
    assert np.array_equal(pool[-4:], utts[order[k]][:4])
    assert pool[-5] == special_token_ids(N_UNITS)["bos"]
    assert pool.tobytes() == reference_pool(data, unique, N_UNITS, 4).tobytes()


def test_test_split_is_packed_in_shard_order_for_in_test_sources(two_sources, tmp_path):
    big, small = two_sources
    data = [{"path": str(big), "in_test": False}, {"path": str(small)}]
    store = _store(data, 0, tmp_path)
    assert np.array_equal(
        store.test([False, True]), ref_pack(ref_utterances(small, None, True), N_UNITS)
    )
    both = ref_pack(ref_utterances(big, None, True) + ref_utterances(small, None, True), N_UNITS)
    assert np.array_equal(store.test([True, True]), both)


def test_default_store_dir_follows_env_else_beside_the_units(two_sources, tmp_path, monkeypatch):
    data = [{"path": str(two_sources[1])}]
    monkeypatch.setenv(tokenstore.ENV_CACHE, str(tmp_path / "cache"))
    pool = _pool(data, 50, 0)
    assert os.path.dirname(os.path.dirname(str(pool.filename))) == str(
        tmp_path / "cache" / "stores"
    )
    monkeypatch.delenv(tokenstore.ENV_CACHE)
    pool = _pool(data, 50, 0)
    beside = two_sources[1] / tokenstore.STORES_DIR
    assert os.path.dirname(os.path.dirname(str(pool.filename))) == str(beside)


def test_trial_data_from_many_shards_stays_small(tmp_path, monkeypatch):
    """Building never holds the units column: peak numpy allocation << the tokens' bytes."""
    monkeypatch.setattr(store_build, "_BATCH_ROWS", 8)  # the working set is one batch
    big, small = tmp_path / "big", tmp_path / "small"
    n_tokens = write_units(big, shards=80, rows_per_shard=40, length=(200, 400), seed=3)
    write_units(small, shards=1, rows_per_shard=12, seed=4)
    data = [{"path": str(big), "in_test": False}, {"path": str(small), "weight": None}]
    sources = [DataSource.from_dict(d) for d in data]
    config = {"n_units": N_UNITS, "unique_tokens": 10, "tokens": 10, "context": 64, "seed": 0}
    open_data(sources, **config, cache_dir=tmp_path / "warm")
    tracemalloc.start()
    try:
        trial = open_data(sources, **config, cache_dir=tmp_path / "c")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # per utterance a few int64s of index (3,212 utterances here), plus one batch of rows
    assert peak < (1 << 20) + n_tokens * 2 / 8, (peak, n_tokens * 2)
    store = tokenstore.open_store(data, N_UNITS, 0, tmp_path / "c")
    assert store.tokens.tobytes() == reference_store(data, N_UNITS, 0).tobytes()
    ref_test = ref_pack(ref_utterances(small, None, test=True), N_UNITS)
    assert np.array_equal(np.concatenate(trial.test), ref_test[: sum(map(len, trial.test))])
