"""The text-LLM reference for Table 3 / Figure 2: downstream envelopes of a published suite.

Default: the Pythia v0 zero-shot table vendored in `slmscale/data/` (see its REFERENCE.md).  A
user can pass their own CSV in the same shape: `params_nonembedding`, `tokens_seen` and metric
columns.  Compute per row is C = 6 x params_nonembedding x tokens_seen.  Text metric columns map
onto our speech metrics (`blimp_acc` -> `sblimp_acc`; cloze columns keep their names).
"""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

import numpy as np

from slmscale.errors import UserError
from slmscale.laws.powerlaw import envelope_law

PYTHIA_FILE = "pythia_v0_zero_shot.csv"
TEXT_TO_SPEECH = {
    "blimp_acc": "sblimp_acc",
    "topic_cloze_acc": "topic_cloze_acc",
    "story_cloze_acc": "story_cloze_acc",
}


def load_reference(path: str | Path | None = None) -> tuple[str, dict[str, np.ndarray]]:
    """(label, columns) of a reference table; the vendored Pythia table by default."""
    if path is None:
        text = resources.files("slmscale.data").joinpath(PYTHIA_FILE).read_text()
        label = "Pythia v0 (EleutherAI)"
    else:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise UserError(f"{path}: cannot read reference table ({exc.strerror})") from None
        label = Path(path).name
    rows = list(csv.DictReader(text.splitlines()))
    need = ("params_nonembedding", "tokens_seen")
    if not rows or any(c not in rows[0] for c in need):
        raise UserError(f"{path or PYTHIA_FILE}: reference table needs columns {', '.join(need)}")

    def col(name):
        vals = []
        for r in rows:
            try:
                vals.append(float(r[name]))
            except (TypeError, ValueError):
                vals.append(np.nan)
        return np.array(vals)

    return label, {name: col(name) for name in rows[0] if name != "model"}


def reference_envelopes(columns: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per speech metric name: C, y, frontier indices and the power law of the text reference."""
    C = 6.0 * columns["params_nonembedding"] * columns["tokens_seen"]
    out = {}
    for text_name, speech_name in TEXT_TO_SPEECH.items():
        if text_name not in columns:
            continue
        y = columns[text_name]
        idx, law = envelope_law(C, y, maximize=True)
        if law is not None:
            out[speech_name] = {"C": C, "y": y, "frontier": idx, "law": law}
    return out
