"""Grid expansion: the paper's grid, stable trial keys, budgets vs data, the dry-run outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from slmscale import units as units_io
from slmscale.config import load_grid_spec
from slmscale.errors import UserError
from slmscale.grid.expand import expand_grid, passes, resolve_data
from slmscale.model import PAPER_SIZES, non_embedding_params
from slmscale.train.schedule import warmup_steps
from slmscale.trial import Optimizer

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "tune_spaces" / "paper.yaml"


def plan(path):
    spec = load_grid_spec(path)
    return spec, expand_grid(spec, resolve_data(spec))


def test_paper_grid_shape_and_passes():
    spec = load_grid_spec(PAPER)
    data = resolve_data(spec)
    trials = expand_grid(spec, data)
    assert len(trials) == 5 * 7 + 5 * 4
    t155 = next(t for t in trials if t.model_size == "155M" and t.tokens == round(128 * 155e6))
    t85 = next(t for t in trials if t.model_size == "85M" and t.tokens == round(128 * 85e6))
    assert int(passes(t155, data) * 100) == 182  # "1.82 epochs" (section 3.3.2)
    assert int(passes(t85, data) * 100) == 99  # "0.99 epochs"
    assert t155.unique_tokens == int(10.89e9) and t155.epochs == pytest.approx(1.8219, abs=1e-4)
    assert t85.unique_tokens == t85.tokens and t85.epochs == 1.0


def test_paper_grid_budgets_steps_and_flops():
    spec, trials = plan(PAPER)
    t = next(t for t in trials if t.model_size == "20M" and t.tokens == round(2 * 20e6))
    n = non_embedding_params(PAPER_SIZES["20M"])
    assert t.batch_size == 64 and t.context == 2050
    assert t.steps == -(-t.tokens // (64 * 2050))
    assert t.warmup_steps == 100
    assert t.flops == 6 * n * t.tokens
    multi = [t for t in trials if t.model_size == "309M" and t.epochs in (2.0, 4.0, 8.0, 10.0)]
    assert sorted(t.epochs for t in multi) == [2.0, 4.0, 8.0, 10.0]
    assert all(t.unique_tokens == round(t.tokens / t.epochs) for t in multi)


def test_warmup_rule():
    opt = Optimizer(warmup_min_steps=100, warmup_fraction=0.01)
    assert warmup_steps(50_000, opt) == 500
    assert warmup_steps(5_000, opt) == 100
    assert warmup_steps(30, opt) == 30  # never longer than the run


def test_trial_keys_are_stable_and_sensitive(tmp_path):
    _, a = plan(PAPER)
    _, b = plan(PAPER)
    assert [t.key for t in a] == [t.key for t in b]
    assert len({t.key for t in a}) == len(a)
    data = yaml.safe_load(PAPER.read_text())
    data["optimizer"]["lr_max"] = 4e-4
    changed = tmp_path / "paper.yaml"
    changed.write_text(yaml.safe_dump(data))
    _, c = plan(changed)
    assert not {t.key for t in a} & {t.key for t in c}
    data["optimizer"]["lr_max"] = 5e-4
    data["resources"]["cpus_per_worker"] = 2  # resources are not part of what a trial *is*
    changed.write_text(yaml.safe_dump(data))
    _, d = plan(changed)
    assert [t.key for t in a] == [t.key for t in d]


def _spec(tmp_path, **kw):
    data = {
        "name": "t",
        "units": [{"path": str(tmp_path / "u")}],
        "models": ["20M"],
        "tokens": [1e6],
    }
    data.update(kw)
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _units(root: Path, train_units: int, k=500, kmeans_sha="abc"):
    units_io.write_json_atomic(
        root / units_io.META_FILE,
        {
            "encoder": "hubert",
            "encoder_id": "x",
            "layer": 11,
            "frame_rate": 25,
            "sample_rate": 16000,
            "kmeans_sha256": kmeans_sha,
            "kmeans_k": k,
            "n_units": k,
            "dedup": True,
            "counts": {"a": {"train": {"units": train_units}, "test": {"units": 999}}},
        },
    )


def test_budget_beyond_data_needs_epochs(tmp_path):
    _units(tmp_path / "u", 500_000)
    with pytest.raises(UserError, match="needs 1,000,000 unique tokens .* the data holds 500,000"):
        plan(_spec(tmp_path))
    _, trials = plan(_spec(tmp_path, epochs=[2]))
    assert trials[0].unique_tokens == 500_000 and trials[0].epochs == 2.0
    spec, trials = plan(_spec(tmp_path, epochs=["auto"]))
    assert trials[0].unique_tokens == 500_000 and passes(trials[0], resolve_data(spec)) == 2.0


def test_present_units_define_vocab_and_tokenizer(tmp_path):
    _units(tmp_path / "u", 10_000_000, k=100)
    spec, trials = plan(_spec(tmp_path))
    data = resolve_data(spec)
    assert data.present and data.n_units == 100 and data.tokenizer == "hubert25hz-k100"
    assert trials[0].data[0].digest == units_io.meta_hash(tmp_path / "u")


def test_missing_units_without_declared_tokens(tmp_path):
    with pytest.raises(UserError, match=r"units\[0\]: units dataset .* not found"):
        plan(_spec(tmp_path))


def test_mixed_tokenizers_refused(tmp_path):
    _units(tmp_path / "u", 10_000_000)
    _units(tmp_path / "v", 10_000_000, kmeans_sha="different")
    p = _spec(tmp_path, units=[{"path": str(tmp_path / "u")}, {"path": str(tmp_path / "v")}])
    with pytest.raises(UserError, match=r"different tokenizer .* \(differs in kmeans_sha256\)"):
        plan(p)


def test_dry_run_cli_table_and_json():
    cmd = [sys.executable, "-m", "slmscale.cli", "grid", str(PAPER), "--dry-run"]
    table = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "55 trials" in table and "TOTAL" in table and "GPU-h" in table
    rows = json.loads(
        subprocess.run(
            cmd + ["--format", "json"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert len(rows) == 55
    keys = {
        "trial_key",
        "model_size",
        "n_params",
        "tokens",
        "unique_tokens",
        "epochs",
        "passes",
        "steps",
        "warmup_steps",
        "flops",
    }
    assert all(keys <= set(r) for r in rows)
    total = sum(r["flops"] for r in rows)
    assert f"{total:.3g}" in table


def test_key_follows_data_content_not_its_path(tmp_path):
    """The same units reached by another path (relative/absolute, another mount) keep the key."""
    _units(tmp_path / "u", 10_000_000)
    (tmp_path / "mnt").mkdir()
    (tmp_path / "mnt" / "u").symlink_to(tmp_path / "u")
    _, a = plan(_spec(tmp_path))
    _, b = plan(_spec(tmp_path, units=[{"path": str(tmp_path / "mnt" / "u")}]))
    assert [t.key for t in a] == [t.key for t in b]
    _units(tmp_path / "u", 10_000_000, kmeans_sha="other")  # other units: another trial
    _, c = plan(_spec(tmp_path))
    assert [t.key for t in a] != [t.key for t in c]
