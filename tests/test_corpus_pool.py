"""The streamed, memory-mapped pool equals the in-memory pool it replaces, byte for byte."""

from __future__ import annotations

import os
import tracemalloc

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from slmscale import corpus
from slmscale import units as units_io
from slmscale.corpus import build_pool, load_sources, load_trial_data
from slmscale.model import special_token_ids

N_UNITS = 50


# --- reference: the in-memory algorithm the streamed pool must reproduce exactly -------------


def _ref_utterances(root, datasets, test):
    table = units_io.read_units(root, datasets=datasets, columns=["units", "split", "dataset"])
    is_test = pc.equal(table["split"], "test")
    table = table.filter(is_test if test else pc.invert(is_test))
    col = table["units"].combine_chunks()
    values = col.values.to_numpy(zero_copy_only=False).astype(np.uint16, copy=False)
    offsets = col.offsets.to_numpy()
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(col))]


def _ref_pack(utterances, n_units):
    ids = special_token_ids(n_units)
    if not utterances:
        return np.zeros(0, dtype=np.uint16)
    bos, eos = np.array([ids["bos"]], np.uint16), np.array([ids["eos"]], np.uint16)
    parts = []
    for u in utterances:
        parts.extend((bos, u, eos))
    return np.concatenate(parts)


def reference_pool(data, unique_tokens, n_units, seed):
    train = [_ref_utterances(s["path"], s.get("datasets"), test=False) for s in data]
    capacity = [sum(len(u) + 2 for u in t) for t in train]
    shares = corpus.allocate(unique_tokens, [float(s.get("weight", 1.0)) for s in data], capacity)
    parts = []
    for i, (utts, share) in enumerate(zip(train, shares, strict=True)):
        order = np.random.default_rng([seed, 1, i]).permutation(len(utts))
        lengths = np.array([len(utts[j]) + 2 for j in order], dtype=np.int64)
        n_utts = int(np.searchsorted(np.cumsum(lengths), share, side="left")) + 1
        parts.append(_ref_pack([utts[j] for j in order[:n_utts]], n_units)[:share])
    return np.concatenate(parts) if parts else np.zeros(0, np.uint16)


# --- synthetic units datasets with several shards, mixed splits and datasets -----------------


def write_units(root, *, shards, rows_per_shard, length=(0, 40), seed=0, datasets=("a", "b")):
    """A units dataset whose shards interleave train/dev/test rows of several datasets."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    n_tokens = 0
    for s in range(shards):
        rows = {name: [] for name in units_io.UNITS_SCHEMA.names}
        for r in range(rows_per_shard):
            u = rng.integers(0, N_UNITS, int(rng.integers(*length)))
            n_tokens += len(u)
            rows["utterance_id"].append(f"u{s}-{r}")
            rows["dataset"].append(datasets[r % len(datasets)])
            rows["split"].append(["train", "train", "dev", "test"][int(rng.integers(4))])
            rows["units"].append(u.tolist())
            rows["durations"].append([1] * len(u))
            rows["n_frames"].append(len(u))
            rows["seconds"].append(len(u) / 25)
            rows["source"].append("synthetic")
        table = pa.Table.from_pydict(rows, schema=units_io.UNITS_SCHEMA)
        units_io.write_table_atomic(table, root / f"shard-{s:05d}.parquet")
    meta = {"encoder": "synthetic", "n_units": N_UNITS, "kmeans_sha256": "x", "seed": seed}
    units_io.write_json_atomic(root / units_io.META_FILE, meta)
    return n_tokens


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("units")
    write_units(root / "big", shards=5, rows_per_shard=60, seed=1)
    write_units(root / "small", shards=3, rows_per_shard=9, seed=2)
    return root / "big", root / "small"


def _capacity(data):
    return sum(s.train_tokens for s in load_sources(data))


CASES = [  # (sources: (name, weight, datasets), fraction of capacity for U_D, seed)
    ([("big", 1.0, None)], 0.5, 0),
    ([("big", 1.0, None)], 0.999, 7),
    ([("big", 1.0, ["b"])], 0.3, 3),
    ([("big", 1.0, None), ("small", 3.0, None)], 0.6, 0),  # small is too small for its 3/4
    ([("small", 2.0, None), ("big", 0.5, ["a"])], 0.8, 11),
    ([("big", 1.0, None), ("small", 1.0, ["a"])], 1.0, 5),  # every token
]


@pytest.mark.parametrize("batch_rows", [4096, 7])
@pytest.mark.parametrize(("srcs", "fraction", "seed"), CASES)
def test_streamed_pool_equals_in_memory_pool(
    two_sources, tmp_path, monkeypatch, srcs, fraction, seed, batch_rows
):
    monkeypatch.setattr(corpus, "_BATCH_ROWS", batch_rows)  # batches across shard rows, too
    paths = dict(zip(("big", "small"), two_sources, strict=True))
    data = [{"path": str(paths[n]), "weight": w, "datasets": d} for n, w, d in srcs]
    for unique in {int(_capacity(data) * fraction), int(_capacity(data) * fraction) - 1}:
        expected = reference_pool(data, unique, N_UNITS, seed)
        pool = build_pool(load_sources(data), unique, N_UNITS, seed, cache_dir=tmp_path)
        assert isinstance(pool, np.memmap) and pool.dtype == np.uint16
        assert len(pool) == len(expected) == unique
        assert pool.tobytes() == expected.tobytes()


def test_pool_ends_mid_utterance(two_sources, tmp_path):
    data = [{"path": str(two_sources[0])}]
    utts = _ref_utterances(two_sources[0], None, test=False)
    order = np.random.default_rng([4, 1, 0]).permutation(len(utts))
    k = next(k for k in range(1, len(order)) if len(utts[order[k]]) > 4)
    unique = sum(len(utts[j]) + 2 for j in order[:k]) + 5  # BOS, 4 units of utterance k
    pool = build_pool(load_sources(data), unique, N_UNITS, 4, cache_dir=tmp_path)
    assert np.array_equal(pool[-4:], utts[order[k]][:4])
    assert pool[-5] == special_token_ids(N_UNITS)["bos"]
    assert pool.tobytes() == reference_pool(data, unique, N_UNITS, 4).tobytes()


def test_pool_file_is_reused_and_keyed(two_sources, tmp_path, monkeypatch):
    data = [{"path": str(two_sources[0])}]
    sources = load_sources(data)
    pool = build_pool(sources, 500, N_UNITS, 0, cache_dir=tmp_path)
    files = list(tmp_path.glob("pool-*.npy"))
    assert len(files) == 1 and str(pool.filename) == str(files[0])
    stamp = files[0].stat().st_mtime_ns
    builds = []
    monkeypatch.setattr(corpus, "_write_source", lambda *a: builds.append(a))
    again = build_pool(load_sources(data), 500, N_UNITS, 0, cache_dir=tmp_path)
    assert builds == [] and files[0].stat().st_mtime_ns == stamp
    assert again.tobytes() == pool.tobytes()
    monkeypatch.undo()
    for other in [(501, N_UNITS, 0), (500, N_UNITS, 1), (500, N_UNITS + 1, 0)]:
        build_pool(sources, *other, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("pool-*.npy"))) == 4  # U_D, seed and K each key the file


def test_partial_file_is_never_used(two_sources, tmp_path, monkeypatch):
    data = [{"path": str(two_sources[0])}]
    sources = load_sources(data)

    def crash(*args):
        raise KeyboardInterrupt  # killed mid-build

    monkeypatch.setattr(corpus, "_write_source", crash)
    with pytest.raises(KeyboardInterrupt):
        build_pool(sources, 500, N_UNITS, 0, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing under the final name, temp removed
    monkeypatch.undo()
    key = corpus.pool_key(sources, 500, N_UNITS, 0)
    stale = tmp_path / f".pool-{key}.npy.tmp-1-deadbeef"  # a temp left by a SIGKILLed build
    np.lib.format.open_memmap(stale, mode="w+", dtype=np.uint16, shape=(500,)).flush()
    pool = build_pool(sources, 500, N_UNITS, 0, cache_dir=tmp_path)
    assert pool.tobytes() == reference_pool(data, 500, N_UNITS, 0).tobytes()
    (tmp_path / f"pool-{key}.npy").write_bytes(b"truncated")  # a broken final file is rebuilt
    pool = build_pool(sources, 500, N_UNITS, 0, cache_dir=tmp_path)
    assert pool.tobytes() == reference_pool(data, 500, N_UNITS, 0).tobytes()


def test_default_cache_dir_follows_env(two_sources, tmp_path, monkeypatch):
    monkeypatch.setenv(corpus.ENV_CACHE, str(tmp_path / "cache"))
    pool = build_pool(load_sources([{"path": str(two_sources[1])}]), 50, N_UNITS, 0)
    assert os.path.dirname(str(pool.filename)) == str(tmp_path / "cache" / "pools")


def test_trial_data_from_many_shards_stays_small(tmp_path, monkeypatch):
    """The loader never holds the units column: peak numpy allocation << the tokens' bytes."""
    monkeypatch.setattr(corpus, "_BATCH_ROWS", 8)  # the working set is one batch
    big, small = tmp_path / "big", tmp_path / "small"
    n_tokens = write_units(big, shards=80, rows_per_shard=40, length=(200, 400), seed=3)
    write_units(small, shards=1, rows_per_shard=12, seed=4)
    data = [{"path": str(big), "in_test": False}, {"path": str(small), "weight": 0.01}]
    unique = int(_capacity(data) * 0.9)
    config = {
        "data": data,
        "n_units": N_UNITS,
        "unique_tokens": unique,
        "tokens": 2 * unique,
        "context": 64,
        "seed": 0,
    }
    load_trial_data(config, cache_dir=tmp_path / "warm")  # one-off costs (lazy imports) first
    tracemalloc.start()
    try:
        trial = load_trial_data(config, cache_dir=tmp_path / "cache")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # units.meta_hash reads meta.json in 1 MiB blocks: a fixed cost, whatever the corpus size
    assert peak < (1 << 20) + n_tokens * 2 / 8, (peak, n_tokens * 2)
    assert trial.stream.pool.tobytes() == reference_pool(data, unique, N_UNITS, 0).tobytes()
    ref_test = _ref_pack(_ref_utterances(small, None, test=True), N_UNITS)
    assert np.array_equal(np.concatenate(trial.test), ref_test[: sum(map(len, trial.test))])
