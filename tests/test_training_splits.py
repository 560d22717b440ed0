"""Held-out splits are never trained on: one rule for the store, the dry run and the planner.

A units folder made from the LibriSpeech root has `train-clean-100`, `dev-clean`, `test-clean`
splits; training must take the first only (the test loss is measured on `test`).
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from slmscale import units as units_io
from slmscale.commands.fit import train_units
from slmscale.tokenstore import ensure_store
from slmscale.train.synthetic import write_synthetic_units


@pytest.mark.parametrize(
    ("split", "trained"),
    [
        ("train", True),
        ("train-clean-100", True),
        ("train-other-500", True),
        ("my_corpus", True),
        ("test", False),
        ("test-clean", False),
        ("dev", False),
        ("dev-other", False),
        ("valid", False),
        ("validation", False),
        ("eval_set", False),
        ("development", True),  # only the exact names and their -/_ variants are held out
    ],
)
def test_which_splits_are_trained_on(split, trained):
    assert units_io.is_training_split(split) is trained


def test_the_store_and_the_counts_leave_dev_out(tmp_path):
    root = tmp_path / "ls"
    write_synthetic_units(root, n_units=20, n_train=40, n_test=6)
    (shard,) = units_io.shard_paths(root)
    table = pq.read_table(shard)
    splits = table.column("split").to_pylist()
    renamed = ["dev-clean" if s == "train" and i % 4 == 0 else s for i, s in enumerate(splits)]
    table = table.set_column(table.schema.get_field_index("split"), "split", pa.array(renamed))
    pq.write_table(table, shard)
    meta = units_io.load_meta(root)
    lengths = {}
    for split, units in zip(renamed, table.column("units").to_pylist(), strict=True):
        c = lengths.setdefault(split, {"utterances": 0, "units": 0})
        c["utterances"] += 1
        c["units"] += len(units)
    (ds,) = meta["counts"]
    meta["counts"] = {ds: lengths}
    (root / units_io.META_FILE).write_text(json.dumps(meta))

    store = ensure_store([{"path": str(root)}], 20, 0, store_dir=tmp_path / "stores")
    train_tokens = lengths["train"]["units"] + 2 * lengths["train"]["utterances"]  # BOS, EOS
    assert store.n_tokens == train_tokens
    assert len(store.test_tokens) == lengths["test"]["units"] + 2 * lengths["test"]["utterances"]
    assert train_units(root) == lengths["train"]["units"]  # the planner's U_D: train only


def test_units_with_no_training_tokens_are_one_line_naming_units(tmp_path, capsys):
    import shutil
    from pathlib import Path

    from slmscale import cli

    write_synthetic_units(tmp_path / "units" / "smoke", n_units=20, n_train=0, n_test=6)
    spec = Path(__file__).resolve().parents[1] / "tune_spaces" / "smoke.yaml"
    shutil.copy(spec, tmp_path / "smoke.yaml")
    assert (
        cli.main(["grid", str(tmp_path / "smoke.yaml"), "epochs=[auto]", "extra=[]", "--dry-run"])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "units: the data holds no training tokens" in err[0]
