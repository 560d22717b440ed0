"""`slmscale eval`: flags, the printed table, a Hugging Face directory and an MLflow run."""

from __future__ import annotations

import json

import pytest
import torch
from test_eval_fixtures import LOSE, TIE, WIN, K, cloze_bench, sblimp_bench, write_units

from slmscale.cli import main
from slmscale.commands.eval import parse_benchmark_flag, training_fingerprint
from slmscale.errors import UserError
from slmscale.model import ModelShape, build_model

ITEMS = [("agreement", "number", "1", [WIN, LOSE, TIE]), ("island", "wh", "3", [LOSE, WIN])]


@pytest.fixture
def setup(tmp_path):
    torch.manual_seed(0)
    model_dir = tmp_path / "model"
    build_model(ModelShape("tiny", 2, 32, 2), n_units=K, context=64).save_pretrained(model_dir)
    root, units, _ = sblimp_bench(tmp_path, ITEMS)
    c_root, c_units = cloze_bench(tmp_path, [WIN, LOSE, TIE])
    flags = [
        "--benchmark",
        f"sblimp={units}:{root}:dev",
        "--benchmark",
        f"story_cloze={c_units}:{c_root}",
    ]
    return tmp_path, model_dir, flags, units


def test_benchmark_flag_parsing():
    b = parse_benchmark_flag("swuggy=u/sw:data/zr:test")
    assert (b.name, b.units, b.root, b.split, b.score) == (
        "swuggy",
        "u/sw",
        "data/zr",
        "test",
        None,
    )
    assert parse_benchmark_flag("sblimp=u:r").split == "dev"
    with pytest.raises(UserError, match="expected NAME=UNITS_DIR:ROOT"):
        parse_benchmark_flag("sblimp=only-units")
    with pytest.raises(UserError, match="name"):
        parse_benchmark_flag("blimp=u:r")


def test_eval_hf_dir_prints_the_table(setup, capsys):
    tmp, model_dir, flags, units = setup
    out_json = tmp / "details.json"
    code = main(
        [
            "eval",
            "--model",
            str(model_dir),
            *flags,
            "--train-units",
            str(units),
            "--device",
            "cpu",
            "--json",
            str(out_json),
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    lines = out.out.splitlines()
    assert lines[0].split()[:3] == ["benchmark", "split", "pairs"]
    assert any(
        line.startswith("sblimp") and " 5/5 " in line and "sum (default)" in line for line in lines
    )
    assert any(
        line.startswith("story_cloze") and " 3/3 " in line and "mean (default)" in line
        for line in lines
    )
    details = json.loads(out_json.read_text())
    assert details["sblimp"]["pairs_scored"] == 5 and "by_type" in details["sblimp"]


def test_eval_refuses_mismatched_training_units(setup, capsys):
    tmp, model_dir, flags, _ = setup
    other = write_units(tmp / "train_units", {"x": [1]}, meta={"kmeans_sha256": "other"})
    code = main(["eval", "--model", str(model_dir), *flags, "--train-units", str(other)])
    err = capsys.readouterr().err
    assert code == 2 and "different tokenizer" in err and "Traceback" not in err


def test_training_fingerprint_reads_paths_from_the_param(setup):
    _, _, _, units = setup
    from test_eval_fixtures import FINGERPRINT

    assert training_fingerprint(f"{units}@0123abcd") == FINGERPRINT
    assert training_fingerprint("/nowhere@abc") is None
    assert training_fingerprint(None) is None


@pytest.mark.slow
def test_eval_run_id_loads_the_artifact_and_logs_back(setup, capsys):
    tmp, model_dir, flags, units = setup
    from slmscale.tracking import client, get_or_create_experiment
    from slmscale.tracking.schema import ARTIFACT_EVAL_DETAILS, ARTIFACT_MODEL_DIR

    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    exp = get_or_create_experiment(uri, "eval-test", artifact_location=str(tmp / "artifacts"))
    c = client(uri)
    run_id = c.create_run(exp).info.run_id
    c.log_param(run_id, "units_dataset", f"{units}@abc")
    c.log_param(run_id, "tokens", "1000")
    c.log_artifacts(run_id, str(model_dir), ARTIFACT_MODEL_DIR)
    code = main(["eval", "--run-id", run_id, "--tracking-uri", uri, *flags, "--device", "cpu"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "tokenizer check skipped" not in out.err
    run = c.get_run(run_id)
    assert 0 <= run.data.metrics["sblimp_acc"] <= 1
    assert set(run.data.metrics) >= {"sblimp_acc_sum", "sblimp_acc_mean", "story_cloze_acc"}
    assert c.get_metric_history(run_id, "sblimp_acc")[0].step == 1000
    art = [a.path for a in c.list_artifacts(run_id, ARTIFACT_EVAL_DETAILS.split("/")[0])]
    assert ARTIFACT_EVAL_DETAILS in art
    code = main(["eval", "--run-id", "0" * 32, "--tracking-uri", uri, *flags])
    assert code == 2 and "not found" in capsys.readouterr().err
