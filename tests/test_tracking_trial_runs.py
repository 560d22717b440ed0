"""`slmscale train` end to end: one MLflow run per trial with the whole schema; reruns skip."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from slmscale.cli import main
from slmscale.tracking import client, runs_table
from slmscale.tracking.schema import (
    ARTIFACT_MODEL_DIR,
    ARTIFACT_TRIAL_CONFIG,
    M_FLOPS,
    M_TEST_LOSS,
    M_TEST_LOSS_FINAL,
    M_TOKENS_PER_SEC,
    M_TOKENS_TRAINED,
    M_TRAIN_LOSS,
    M_UNIQUE_TOKENS_SEEN,
    PARAM_NAMES,
    TAG_GRID,
    TAG_KIND,
    TAG_TRIAL_KEY,
)
from slmscale.train.synthetic import write_synthetic_units

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    write_synthetic_units(tmp_path / "units" / "smoke")
    shutil.copy(REPO / "tune_spaces" / "smoke.yaml", tmp_path / "smoke.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def test_train_logs_the_whole_schema_and_rerun_skips(workdir, capsys):
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    assert main(["train", "smoke.yaml", "--index", "4", "--tracking-uri", uri]) == 0
    c = client(uri)
    exp = c.get_experiment_by_name("smoke")
    runs = c.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert set(PARAM_NAMES) <= set(run.data.params)
    assert run.data.params["tokens"] == "8192" and run.data.params["unique_tokens"] == "4096"
    assert run.data.tags[TAG_KIND] == "train" and run.data.tags[TAG_GRID] == "smoke"
    m = run.data.metrics
    assert m[M_TOKENS_TRAINED] == 8192 and m[M_UNIQUE_TOKENS_SEEN] == 4096
    assert m[M_TEST_LOSS_FINAL] == m[M_TEST_LOSS] and m[M_TOKENS_PER_SEC] > 0
    assert m[M_FLOPS] == 6 * int(run.data.params["n_params"]) * 8192
    steps = [p.step for p in c.get_metric_history(run.info.run_id, M_TRAIN_LOSS)]
    assert steps == sorted(set(steps)) and steps[-1] == 8192  # step = tokens seen, no repeats
    test_steps = [p.step for p in c.get_metric_history(run.info.run_id, M_TEST_LOSS)]
    assert test_steps == [2048, 4096, 6144, 8192]  # n_evals 4 over 32 steps, then the end
    arts = {a.path for a in c.list_artifacts(run.info.run_id)}
    assert {ARTIFACT_TRIAL_CONFIG, ARTIFACT_MODEL_DIR} <= arts
    from transformers import AutoModelForCausalLM

    local = c.download_artifacts(run.info.run_id, ARTIFACT_MODEL_DIR, str(workdir / "dl"))
    model = AutoModelForCausalLM.from_pretrained(local)
    assert model.config.vocab_size == 23  # K = 20 plus PAD, BOS, EOS

    table = runs_table(uri, ["smoke"])
    assert table.loc[0, "loss"] == m[M_TEST_LOSS_FINAL]

    capsys.readouterr()
    assert main(["train", "smoke.yaml", "--index", "4", "--tracking-uri", uri]) == 0
    assert "already FINISHED" in capsys.readouterr().err
    runs = c.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].data.tags[TAG_TRIAL_KEY] == run.data.tags[TAG_TRIAL_KEY]


def test_missing_units_dataset_exits_2(workdir, capsys):
    shutil.rmtree(workdir / "units")
    (workdir / "s.yaml").write_text(
        (workdir / "smoke.yaml").read_text() + "available_tokens: 100000\n"
    )
    assert main(["grid", "s.yaml"]) == 2
    err = capsys.readouterr().err
    assert "units/smoke" in err and "not found" in err and len(err.strip().splitlines()) == 1
    assert not (workdir / "mlflow.db").exists()  # refused before anything was tracked


def test_mixed_tokenizers_exit_2(workdir, capsys):
    write_synthetic_units(workdir / "units" / "other", n_units=30)
    text = (
        (workdir / "smoke.yaml")
        .read_text()
        .replace("  - {path: units/smoke}", "  - {path: units/smoke}\n  - {path: units/other}")
    )
    (workdir / "s.yaml").write_text(text)
    assert main(["grid", "s.yaml"]) == 2
    assert "different tokenizer" in capsys.readouterr().err


def test_model_too_large_for_device_memory_exits_2(workdir, capsys):
    text = (
        (workdir / "smoke.yaml")
        .read_text()
        .replace(
            "resources: {workers: 1, cpus_per_worker: 1}",
            "resources: {workers: 1, cpus_per_worker: 1, device_memory_gb: 0.0001}",
        )
    )
    (workdir / "s.yaml").write_text(text)
    assert main(["train", "s.yaml", "--index", "0"]) == 2
    err = capsys.readouterr().err
    assert "device_memory_gb" in err and "tiny-a" in err
