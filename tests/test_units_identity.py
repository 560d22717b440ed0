"""A units dataset's (and a benchmark's) identity is its content, not where its files sat.

`units.dataset_digest` is what trial keys and token-store keys hash: the same rows made from
inputs elsewhere, with the k-means file elsewhere, in another folder, or with the shards cut into
other row groups, must get the same digest; any changed unit or tokenizer must change it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from slmscale import units as units_io
from slmscale.evaluate import benchmark_digest
from slmscale.train.synthetic import write_synthetic_units
from slmscale.units_digest import SHARD_DIGESTS, shard_digest, shard_digests


def _rewrite(root: Path, change) -> None:
    """Rewrite every shard as change(table) and the meta as it was (no recorded digests)."""
    for path in units_io.shard_paths(root):
        pq.write_table(change(pq.read_table(path)), path, row_group_size=7)


def _meta(root: Path, **updates) -> None:
    path = root / units_io.META_FILE
    meta = json.loads(path.read_text()) | updates
    path.write_text(json.dumps(meta))


@pytest.fixture
def units(tmp_path) -> Path:
    return write_synthetic_units(tmp_path / "a" / "units", n_units=20, n_train=40, n_test=5)


def test_same_rows_elsewhere_get_the_same_digest(units, tmp_path):
    other = tmp_path / "b" / "elsewhere"
    shutil.copytree(units, other)
    # inputs and k-means file elsewhere: other `source` values and other paths in the meta
    where = pa.array(["/b/x.flac"] * 45)
    _rewrite(other, lambda t: t.set_column(t.schema.get_field_index("source"), "source", where))
    (a,), (b,) = units_io.shard_paths(units), units_io.shard_paths(other)
    assert units_io.sha256_file(a) != units_io.sha256_file(b)  # the files differ, the rows not
    _meta(other, kmeans_path="/b/kmeans.npy", inputs=[{"path": "/b/audio"}], package_version="9")
    assert units_io.dataset_digest(other) == units_io.dataset_digest(units)
    assert units_io.meta_hash(other) == units_io.dataset_digest(units)  # the grid's old name


def test_changed_units_or_tokenizer_change_the_digest(units, tmp_path):
    before = units_io.dataset_digest(units)
    changed = tmp_path / "changed"
    shutil.copytree(units, changed)

    def bump_first_unit(t: pa.Table) -> pa.Table:
        rows = t["units"].to_pylist()
        rows[0] = [(rows[0][0] + 1) % 20, *rows[0][1:]]
        return t.set_column(
            t.schema.get_field_index("units"), "units", pa.array(rows, pa.list_(pa.uint16()))
        )

    _rewrite(changed, bump_first_unit)
    assert units_io.dataset_digest(changed) != before
    retok = tmp_path / "retok"
    shutil.copytree(units, retok)
    _meta(retok, kmeans_sha256="0" * 64)
    assert units_io.dataset_digest(retok) != before
    resplit = tmp_path / "resplit"
    shutil.copytree(units, resplit)
    upper = pc.utf8_upper  # the same rows, other split names
    _rewrite(resplit, lambda t: t.set_column(2, "split", upper(t["split"])))
    assert units_io.dataset_digest(resplit) != before


def test_shard_digest_ignores_row_groups_and_reads_its_record(units):
    (shard,) = units_io.shard_paths(units)
    before = shard_digest(shard)
    table = pq.read_table(shard)
    for rows in (1, 3, 1000):
        pq.write_table(table, shard, row_group_size=rows)
        assert shard_digest(shard) == before
    digest = units_io.dataset_digest(units)  # no digests recorded: hashed from the shards
    _meta(units, **{SHARD_DIGESTS: shard_digests(units)})
    assert units_io.dataset_digest(units) == digest
    # a recorded digest is what the identity reads (written with the meta, after the shards)
    _meta(units, **{SHARD_DIGESTS: {shard.name: "f" * 64}})
    assert units_io.dataset_digest(units) != digest


def _gold(root: Path, flip: bool = False) -> Path:
    folder = root / "lexical" / "dev"
    folder.mkdir(parents=True)
    rows = ["filename,id,voice,correct,word"]
    for i in range(3):
        good, bad = ("1", "0") if not (flip and i == 2) else ("0", "1")
        rows += [f"w{i},{i},v,{good},word{i}", f"n{i},{i},v,{bad},word{i}"]
    (folder / "gold.csv").write_text("\n".join(rows) + "\n")
    return root


def test_benchmark_digest_is_its_pairs_and_units(units, tmp_path):
    a = benchmark_digest("swuggy", units, _gold(tmp_path / "ga"), "dev")
    b = benchmark_digest("swuggy", units, _gold(tmp_path / "gb"), "dev")
    assert a is not None and a == b
    assert benchmark_digest("swuggy", units, _gold(tmp_path / "gc", flip=True), "dev") != a
    other_units = write_synthetic_units(tmp_path / "u2", n_units=20, n_train=40, n_test=5, seed=1)
    assert benchmark_digest("swuggy", other_units, tmp_path / "ga", "dev") != a
    assert benchmark_digest("swuggy", tmp_path / "absent", tmp_path / "ga", "dev") is None
