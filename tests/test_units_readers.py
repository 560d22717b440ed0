"""A units folder any Parquet reader opens as it is: the shards, and nothing else.

Side files (`_meta.json`, `_rejects.parquet`, `_token_stores/`) and work folders (`.tokenize/`)
are named the way pyarrow, pandas and Ray Data skip; `datasets` is shown in docs/tokenize.md.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from slmscale import units as units_io
from slmscale.tokenstore import ensure_store
from slmscale.train.synthetic import write_synthetic_units


@pytest.fixture
def units(tmp_path, monkeypatch):
    monkeypatch.delenv("SLMSCALE_CACHE", raising=False)  # the store's default home: in the units
    root = tmp_path / "units"
    write_synthetic_units(root, n_units=20, n_train=60, n_test=8)
    units_io.write_table_atomic(
        pa.table(
            {"source": ["/audio/bad.flac"], "dataset": ["x"], "error": ["empty file"]},
            schema=units_io.REJECTS_SCHEMA,
        ),
        root / units_io.REJECTS_FILE,
    )
    ensure_store([{"path": str(root)}], 20, 0)  # the token store, in its default home
    (root / ".tokenize").mkdir()
    (root / ".tokenize" / "plan.json").write_text("{}")
    return root


def _n_rows(root) -> int:
    return sum(pa.parquet.read_metadata(p).num_rows for p in units_io.shard_paths(root))


def test_the_side_files_are_there_and_named_for_readers_to_skip(units):
    names = {p.name for p in units.iterdir()}
    assert {"_meta.json", "_rejects.parquet", "_token_stores", ".tokenize"} <= names
    assert all(n.startswith(("_", ".", "shard-")) for n in names), names


def test_pandas_reads_the_folder_as_the_shards(units):
    import pandas as pd

    df = pd.read_parquet(units)
    assert len(df) == _n_rows(units) == 68
    assert set(df.columns) >= {"utterance_id", "dataset", "split", "units"}
    assert df["units"].notna().all()  # no rejects rows (units=None) mixed in


def test_pyarrow_dataset_reads_the_folder_as_the_shards(units):
    table = ds.dataset(units, format="parquet").to_table()
    assert table.num_rows == 68 and table.schema.names[0] == "utterance_id"


@pytest.mark.slow
def test_ray_data_reads_the_folder_as_the_shards(units):
    import ray

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        rows = ray.data.read_parquet(str(units)).take_all()
    finally:
        ray.shutdown()
    assert len(rows) == 68 and all(r["units"] is not None for r in rows)
