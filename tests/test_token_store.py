"""Issue 15 (one token store per dataset, trials read prefixes) and issue 21's full disk.

Nested budgets, the declared mixture at very different budgets, no Parquet read at a trial
start with a ready store, one build for concurrent starters (processes), content-keyed reuse,
and a full disk that ends in one line, exit 2, and nothing a rerun would trust.
"""

from __future__ import annotations

import builtins
import errno
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _units_data import N_UNITS, write_units

from slmscale import hashing, tokenstore, units_digest
from slmscale import units as units_io
from slmscale.corpus import open_data
from slmscale.errors import UserError
from slmscale.trial import DataSource

TIMEOUT = 600  # generous: the machine is shared and loaded


def _open(data, unique, seed=0, context=32, cache_dir=None, n_units=N_UNITS):
    """A trial's data: two passes over the first `unique` tokens of the sources' store."""
    sources = [DataSource.from_dict(d) for d in data]
    return open_data(
        sources,
        n_units=n_units,
        seed=seed,
        unique_tokens=unique,
        tokens=2 * unique,
        context=context,
        cache_dir=cache_dir,
    )


@pytest.fixture(scope="module")
def three_sources(tmp_path_factory):
    """Sources of very different sizes (about 25 : 3 : 1) of short utterances (2-9 units)."""
    root = tmp_path_factory.mktemp("mix")
    write_units(root / "large", shards=8, rows_per_shard=3000, length=(2, 10), seed=1)
    write_units(root / "medium", shards=2, rows_per_shard=1800, length=(2, 10), seed=2)
    write_units(root / "tiny", shards=1, rows_per_shard=1200, length=(2, 10), seed=3)
    return [root / "large", root / "medium", root / "tiny"]


def test_two_budgets_read_nested_prefixes(three_sources, tmp_path):
    data = [{"path": str(p)} for p in three_sources]
    small = _open(data, 3_000, cache_dir=tmp_path)
    large = _open(data, 40_000, cache_dir=tmp_path)
    a, b = small.stream.pool, large.stream.pool
    assert len(a) == 3_000 and len(b) == 40_000
    assert np.array_equal(a, b[:3_000])  # every smaller budget is a subset of every larger one
    assert a.filename == b.filename  # the same file: nothing copied per trial
    assert len(list(tmp_path.glob("store-*"))) == 1


def _max_utterance(store):
    starts = np.load(store.path / tokenstore.UTTS_FILE)
    return int(np.diff(starts).max())


@pytest.mark.parametrize("weights", [None, [1.0, 1.0, 1.0], [1.0, 2.0, 0.5]])
def test_each_source_holds_its_declared_share_at_very_different_budgets(
    three_sources, tmp_path, weights
):
    w = weights or [None] * 3
    data = [{"path": str(p), "weight": x} for p, x in zip(three_sources, w, strict=True)]
    store = tokenstore.ensure_store(data, N_UNITS, 0, tmp_path)
    cap = store.capacity
    declared = np.array(weights or cap, float) / sum(weights or cap)
    assert np.allclose(store.weights, declared)
    slack = len(data) * _max_utterance(store)  # "to within one utterance per source"
    limit = int(tokenstore.holds_until(store.weights, cap))
    budgets = [500, limit // 2, limit]  # 500 tokens vs 13k-170k (dev splits are not trained on)
    assert budgets[-1] / budgets[0] > 20
    for u in budgets:
        got = store.source_tokens(u)
        assert got.sum() == u
        assert np.all(np.abs(got - declared * u) <= slack), (u, got, declared * u)
    # beyond the point where a source runs out (explicit weights), the others share its part
    if limit < store.n_tokens:
        u = (limit + store.n_tokens) // 2
        expected = tokenstore.allocate(u, store.weights, cap)
        assert np.all(np.abs(store.source_tokens(u) - expected) <= slack)
    # proportional weights: every source runs out at the very end, together
    if weights is None:
        assert abs(limit - store.n_tokens) <= 1  # (float rounding)


def test_equal_weights_used_to_drift_and_the_store_does_not(three_sources, tmp_path):
    """The issue's SWC case: with equal weights the tiny source is 1/3 of every prefix it can
    fill, not a share that shrinks as the budget grows."""
    data = [{"path": str(p), "weight": 1.0} for p in three_sources]
    store = tokenstore.ensure_store(data, N_UNITS, 0, tmp_path)
    limit = int(tokenstore.holds_until(store.weights, store.capacity))
    shares = [store.source_tokens(u)[2] / u for u in (600, limit)]
    assert shares == pytest.approx([1 / 3, 1 / 3], abs=0.12)
    assert abs(shares[0] - shares[1]) < 0.12


class _ShardReads:
    """Counts every way this code base opens a Parquet shard."""

    def __init__(self, monkeypatch):
        self.paths: list[str] = []
        real_pf, real_rt, real_open = pq.ParquetFile, pq.read_table, builtins.open
        real_sha = units_io.sha256_file

        def note(path):
            if str(path).endswith(".parquet"):
                self.paths.append(str(path))

        def pf(source, *a, **k):
            note(source)
            return real_pf(source, *a, **k)

        def rt(source, *a, **k):
            note(source)
            return real_rt(source, *a, **k)

        def op(file, *a, **k):
            note(file)
            return real_open(file, *a, **k)

        def sha(path, *a, **k):
            note(path)
            return real_sha(path, *a, **k)

        monkeypatch.setattr(pq, "ParquetFile", pf)
        monkeypatch.setattr(pq, "read_table", rt)
        monkeypatch.setattr(builtins, "open", op)
        monkeypatch.setattr(units_io, "sha256_file", sha)
        monkeypatch.setattr(hashing, "sha256_file", sha)
        monkeypatch.setattr(units_digest, "_memo", {})  # nothing remembered from earlier reads


def test_trial_start_with_a_ready_store_reads_no_parquet_shard(
    three_sources, tmp_path, monkeypatch
):
    data = [{"path": str(p)} for p in three_sources]
    reads = _ShardReads(monkeypatch)
    built = _open(data, 5_000, cache_dir=tmp_path)  # builds: reads shards
    assert reads.paths, "the counter must see the build's reads"
    reads.paths.clear()
    units_digest._memo.clear()  # as in a new process: the units' identity comes from their meta
    for unique in (5_000, 20_000, 500):
        trial = _open(data, unique, cache_dir=tmp_path)
        assert len(trial.stream.pool) == unique and trial.test
    assert reads.paths == []
    assert np.array_equal(built.stream.pool[:500], trial.stream.pool)


def _start_together(args):
    barrier, data, store_dir = args
    from slmscale import tokenstore as ts

    barrier.wait(timeout=TIMEOUT)
    store = ts.ensure_store(data, N_UNITS, 0, store_dir, log=lambda _line: None)
    return store.built_here, str(store.path), store.tokens[:2000].tobytes()


def test_ranks_starting_together_build_the_store_once(tmp_path):
    root = tmp_path / "units"
    write_units(root, shards=8, rows_per_shard=300, length=(50, 150), seed=5)
    data = [{"path": str(root)}]
    ctx = mp.get_context("spawn")
    n = 4
    with ctx.Manager() as manager:
        barrier = manager.Barrier(n)
        with ctx.Pool(n) as pool:
            results = pool.map(_start_together, [(barrier, data, str(tmp_path / "s"))] * n)
    assert sum(built for built, _, _ in results) == 1  # one built, the others waited
    assert len({path for _, path, _ in results}) == 1
    assert len({head for _, _, head in results}) == 1
    left = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert [name for name in left if not name.endswith(".lock")] == [Path(results[0][1]).name]


def test_changed_shards_are_never_reused_silently(tmp_path, capsys):
    root = tmp_path / "units"
    write_units(root, shards=2, rows_per_shard=40, seed=6)
    data = [{"path": str(root)}]
    store = tokenstore.ensure_store(data, N_UNITS, 0, tmp_path / "s")
    first = store.tokens.tobytes()
    # same bytes, new mtime (a copy, an rsync): hashed, recognised, reused
    shard = units_io.shard_paths(root)[0]
    os.utime(shard, ns=(1, 1))
    again = tokenstore.ensure_store(data, N_UNITS, 0, tmp_path / "s")
    assert not again.built_here and again.tokens.tobytes() == first
    # different content under the same name, meta.json untouched: rebuilt, with a line saying so
    other = tmp_path / "other"
    write_units(other, shards=2, rows_per_shard=40, seed=7)
    os.replace(units_io.shard_paths(other)[0], shard)
    capsys.readouterr()
    rebuilt = tokenstore.ensure_store(data, N_UNITS, 0, tmp_path / "s")
    assert rebuilt.built_here and rebuilt.tokens.tobytes() != first
    assert "changed since the token store was built" in capsys.readouterr().err


def test_the_same_units_in_another_folder_find_the_same_store(tmp_path):
    """The key is the units' content: a copy elsewhere, whose shards name their inputs by other
    paths (the `source` column), opens the store built from the original, unchanged."""
    root = tmp_path / "laptop" / "units"
    write_units(root, shards=2, rows_per_shard=40, seed=13)
    store = tokenstore.ensure_store([{"path": str(root)}], N_UNITS, 0, tmp_path / "s")
    copy = tmp_path / "cluster" / "units"
    shutil.copytree(root, copy)
    for shard in units_io.shard_paths(copy):
        t = pq.read_table(shard)
        where = pa.array([f"/mnt/audio/{i}.flac" for i in range(t.num_rows)])
        pq.write_table(t.set_column(t.schema.get_field_index("source"), "source", where), shard)
    again = tokenstore.ensure_store([{"path": str(copy)}], N_UNITS, 0, tmp_path / "s")
    assert not again.built_here and again.path == store.path
    assert again.tokens.tobytes() == store.tokens.tobytes()


def test_incomplete_or_broken_stores_are_never_trusted(tmp_path):
    root = tmp_path / "units"
    write_units(root, shards=2, rows_per_shard=40, seed=8)
    data = [{"path": str(root)}]
    base = tmp_path / "s"
    store = tokenstore.ensure_store(data, N_UNITS, 0, base)
    good = store.tokens.tobytes()
    path = store.path
    # a build killed mid-way leaves a temp folder: never opened, removed by the next builder
    tmp = base / f".{path.name}.tmp-1-deadbeef"
    tmp.mkdir()
    (tmp / tokenstore.TOKENS_FILE).write_bytes(b"\0" * 10)
    for damage in ("truncate", "incomplete", "no index"):
        if damage == "truncate":
            with open(path / tokenstore.TOKENS_FILE, "r+b") as f:
                f.truncate(10)
        elif damage == "incomplete":
            index = json.loads((path / tokenstore.INDEX_FILE).read_text())
            (path / tokenstore.INDEX_FILE).write_text(json.dumps(index | {"complete": False}))
        else:
            (path / tokenstore.INDEX_FILE).unlink()
        assert tokenstore.open_store(data, N_UNITS, 0, base) is None
        again = tokenstore.ensure_store(data, N_UNITS, 0, base, log=lambda _l: None)
        assert again.built_here and again.tokens.tobytes() == good
    assert not tmp.exists()


def test_simulated_enospc_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    root = tmp_path / "units"
    write_units(root, shards=2, rows_per_shard=40, seed=9)
    data = [{"path": str(root)}]

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(UserError) as err:
        tokenstore.ensure_store(data, N_UNITS, 0, tmp_path / "s", log=lambda _l: None)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "s") in msg and "needs" in msg
    assert [p.name for p in (tmp_path / "s").iterdir() if not p.name.endswith(".lock")] == []
    monkeypatch.undo()
    assert tokenstore.ensure_store(data, N_UNITS, 0, tmp_path / "s").built_here


def test_token_dtype_widens_only_when_needed():
    assert tokenstore.token_dtype(500) == np.uint16
    assert tokenstore.token_dtype(65_533) == np.uint16  # EOS = 65,535
    assert tokenstore.token_dtype(65_534) == np.uint32


def test_mixture_weights_are_all_or_none():
    assert tokenstore.mixture_weights([None, None], [30, 10]) == [0.75, 0.25]
    assert tokenstore.mixture_weights([1.0, 3.0], [30, 10]) == [0.25, 0.75]
    with pytest.raises(UserError, match="every source or to none"):
        tokenstore.mixture_weights([1.0, None], [30, 10])


# --- a real full disk: a 1 MiB tmpfs (root only), through `slmscale train` ---------------------


@pytest.fixture
def tiny_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()}); ENOSPC is simulated")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_through_the_cli_is_one_line_exit_2_and_nothing_trusted(tmp_path, tiny_disk):
    units = tmp_path / "units" / "big"
    # about 0.9M tokens = 1.8 MB of uint16: more than the 1 MiB disk holds
    n = write_units(
        units, shards=4, rows_per_shard=1500, length=(100, 200), seed=10, datasets=("a",)
    )
    meta = units_io.load_meta(units) | {"counts": {"a": {"train": {"units": n // 2}}}}
    units_io.write_json_atomic(units / units_io.META_FILE, meta)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(
            f"""
            name: full-disk
            units: [{{path: {units}}}]
            models: [{{name: t, layers: 1, dim: 16, heads: 2}}]
            tokens: [4096]
            batch_size: 2
            context: 32
            """
        )
    )
    env = os.environ | {tokenstore.ENV_CACHE: str(tiny_disk), "SLMSCALE_HOME": str(tmp_path)}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "slmscale.cli", "train", str(spec), "--index", "0"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])  # not 135 (SIGBUS)
    errors = [ln for ln in r.stderr.splitlines() if "no space left" in ln]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    assert str(tiny_disk / "stores") in errors[0] and "needs" in errors[0]
    stores = tiny_disk / "stores"
    assert [p.name for p in stores.iterdir() if not p.name.endswith(".lock")] == []
    data = [{"path": str(units)}]
    assert tokenstore.open_store(data, N_UNITS, 0, stores) is None


def test_dry_run_prints_each_sources_share_and_the_store_size(three_sources, tmp_path, capsys):
    from slmscale.cli import main

    for root in three_sources:  # meta.json counts, as `slmscale tokenize` writes them
        t = units_io.read_units(root, columns=["units", "split"])
        units = sum(len(u) for u in t["units"].to_pylist())
        units_io.write_json_atomic(
            root / units_io.META_FILE,
            units_io.load_meta(root) | {"counts": {"a": {"train": {"units": units}}}},
        )
    spec = tmp_path / "spec.yaml"
    units = ", ".join(f"{{path: {p}}}" for p in three_sources)
    spec.write_text(
        f"name: mix\nunits: [{units}]\nmodels: [{{name: t, layers: 1, dim: 16, heads: 2}}]\n"
        "tokens: [1000, 20000]\nbatch_size: 2\ncontext: 32\n"
    )
    assert main(["grid", str(spec), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "mixture: proportional to each source's size" in out
    lines = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln.startswith("  /")}
    shares = [float(lines[str(p)][2].rstrip("%")) for p in three_sources]
    assert sum(shares) == pytest.approx(100, abs=0.2) and shares[0] > shares[1] > shares[2]
    assert "token store:" in out and "2 bytes/token" in out


def test_tokenize_builds_the_store_and_the_first_trial_reads_no_shard(
    tmp_path, monkeypatch, capsys
):
    from slmscale.audio.kmeans import save_centroids
    from slmscale.audio.synthetic import write_audio
    from slmscale.cli import main

    for split, n in (("train", 3), ("test", 1)):
        for i in range(n):
            write_audio(tmp_path / split / f"s{i}.flac", 1.5, 16000, 1, freq=150.0 + 60 * i, seed=i)
    km = tmp_path / "km.npy"
    save_centroids(np.random.default_rng(0).standard_normal((20, 80)).astype(np.float32) - 8, km)
    out = tmp_path / "units"
    argv = ["tokenize", "--input", f"ls:train={tmp_path / 'train'}"]
    argv += ["--input", f"ls:test={tmp_path / 'test'}", "--out", str(out), "--kmeans", str(km)]
    assert main([*argv, "--engine", "local"]) == 0
    assert "token store:" in capsys.readouterr().out
    data = [{"path": str(out)}]
    store = tokenstore.open_store(data, 20, 0)
    assert store is not None and store.n_tokens > 0
    reads = _ShardReads(monkeypatch)
    trial = _open(data, store.n_tokens, context=16, n_units=20)
    assert reads.paths == [] and len(trial.stream.pool) == store.n_tokens and trial.test


def test_a_new_version_of_the_units_replaces_the_old_store(tmp_path):
    root = tmp_path / "units"
    write_units(root, shards=2, rows_per_shard=40, seed=11)
    data = [{"path": str(root)}]
    old = tokenstore.ensure_store(data, N_UNITS, 0, tmp_path / "s")
    other = tokenstore.ensure_store(data, N_UNITS, 1, tmp_path / "s")  # another seed: kept
    write_units(root, shards=3, rows_per_shard=40, seed=12)  # re-tokenized: new meta, new shard
    new = tokenstore.ensure_store(data, N_UNITS, 0, tmp_path / "s", log=lambda _l: None)
    assert new.built_here and new.path != old.path
    stores = sorted(p.name for p in (tmp_path / "s").glob("store-*") if p.is_dir())
    assert stores == sorted([new.path.name, other.path.name])
