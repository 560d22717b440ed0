"""reports/demo/reference_trials.json states the committed report's own numbers.

The file (slmscale.demo.reference, written with the report) is what the before-commit check
retrains and compares (`python -m slmscale.demo.reference check`, ~10 minutes on 2 cores: it
remakes the full world).  This cheap test keeps the file and the report from drifting apart:
each reference trial's loss is the final test loss the report's fit used for that size and
budget, and the file says what made it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from slmscale.demo.reference import POINTS, REFERENCE_FILE
from slmscale.model import ModelShape, non_embedding_params

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "reports" / "demo" / REFERENCE_FILE


@pytest.mark.skipif(
    not REFERENCE.is_file(),
    reason="reports/demo has no reference_trials.json yet: the demo's regeneration writes it "
    "(python -m slmscale.demo.reference write --workdir W --report-dir reports/demo)",
)
def test_reference_trials_are_the_committed_reports_numbers():
    ref = json.loads(REFERENCE.read_text())
    fit = json.loads((REFERENCE.parent / "fit.json").read_text())
    spec = yaml.safe_load((ROOT / "tune_spaces" / "demo.yaml").read_text())
    params = {
        m["name"]: non_embedding_params(
            ModelShape(m["name"], m["layers"], m["dim"], m["heads"], m.get("intermediate"))
        )
        for m in spec["models"]
    }
    used = {(int(r["params"]), int(r["tokens"])): r["loss"] for r in fit["quality"]["residuals"]}
    assert [(p["model_size"], p["tokens"]) for p in ref["points"]] == list(POINTS)
    for p in ref["points"]:
        loss = used[(params[p["model_size"]], p["tokens"])]
        assert p["loss"] == pytest.approx(loss, rel=1e-5), p
    assert len(ref["kmeans_sha256"]) == 64 and len(ref["units_digest"]) == 16
    assert ref["machine"]["cpu"] and ref["machine"]["torch"]
