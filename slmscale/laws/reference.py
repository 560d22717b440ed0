"""The text-LLM reference for Table 3 / Figure 2: a published suite's checkpoints, same rule.

Default: the Pythia v0 zero-shot table vendored in `slmscale/data/` (see its REFERENCE.md):
Pythia v0, 70M-12B, every stored checkpoint; the first is at ~7e17 FLOPs and already scores
0.71-0.77 on BLiMP.  The paper's own text evaluations (its Table 3 text row) are not public, so
this is the closest like-for-like table there is, not the paper's numbers.  As the paper does
(Section 3.1, "we do not use the largest 12B model"), the vendored table's 12B models are left
out; a user's table (`--text-reference FILE`) is used as it is.

A user's table has the same columns: `params_nonembedding`, `tokens_seen`, metric columns, and
optionally `model` (the resampling unit: all checkpoints of a model go together; default: one
model per distinct `params_nonembedding`).  Compute per row is C = 6 x params_nonembedding x
tokens_seen.  Text metric columns map onto our speech metrics (`blimp_acc` -> `sblimp_acc`;
cloze columns keep their names).  gamma_q is computed by `gamma.gamma_q`, the function the
speech side uses.
"""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

import numpy as np

from slmscale.errors import UserError
from slmscale.laws.flops import six_nd
from slmscale.laws.gamma import CHANCE, at_chance, gamma_q
from slmscale.laws.powerlaw import envelope_law

PYTHIA_FILE = "pythia_v0_zero_shot.csv"
PYTHIA_LABEL = "Pythia v0 (EleutherAI), 70M-6.9B, every checkpoint (12B left out as in the paper)"
PAPER_EXCLUDED_MODELS = ("pythia-12b", "pythia-12b-deduped")
TEXT_TO_SPEECH = {
    "blimp_acc": "sblimp_acc",
    "topic_cloze_acc": "topic_cloze_acc",
    "story_cloze_acc": "story_cloze_acc",
}


def load_reference(path: str | Path | None = None) -> tuple[str, dict[str, np.ndarray]]:
    """(label, columns) of a reference table; the vendored Pythia table by default.

    `columns["model"]` holds the resampling unit of each row (strings).
    """
    if path is None:
        text = resources.files("slmscale.data").joinpath(PYTHIA_FILE).read_text()
        label = PYTHIA_LABEL
    else:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise UserError(f"{path}: cannot read reference table ({exc.strerror})") from None
        label = Path(path).name
    rows = list(csv.DictReader(text.splitlines()))
    where = path or PYTHIA_FILE
    need = ("params_nonembedding", "tokens_seen")
    if not rows or any(c not in rows[0] for c in need):
        raise UserError(f"{where}: reference table needs columns {', '.join(need)}")
    if path is None:
        rows = [r for r in rows if r.get("model") not in PAPER_EXCLUDED_MODELS]

    def col(name):
        vals = []
        for r in rows:
            try:
                vals.append(float(r[name]))
            except (TypeError, ValueError):
                vals.append(np.nan)
        return np.array(vals)

    out = {name: col(name) for name in rows[0] if name != "model"}
    for c in need:
        bad = np.flatnonzero(~(np.isfinite(out[c]) & (out[c] > 0)))
        if bad.size:
            raise UserError(f"{where}: row {bad[0] + 2}: {c} is not a positive number")
    if "model" in rows[0]:
        out["model"] = np.array([str(r["model"]) for r in rows])
    else:
        out["model"] = np.array([f"N={v:g}" for v in out["params_nonembedding"]])
    return label, out


def reference_envelopes(columns: dict[str, np.ndarray]) -> dict:
    """Per speech metric name: C, y, frontier indices, the power law (Figure 2) and gamma_q.

    The model groups are in `groups` (int index per row) with `n_groups`, for the bootstrap.
    """
    C = six_nd(columns["params_nonembedding"], columns["tokens_seen"])
    _, groups = np.unique(columns["model"], return_inverse=True)
    out = {}
    for text_name, speech_name in TEXT_TO_SPEECH.items():
        if text_name not in columns:
            continue
        y = columns[text_name]
        idx, law = envelope_law(C, y, maximize=True)
        if law is None:
            continue
        chance = CHANCE.get(text_name, 0.5)
        out[speech_name] = {
            "C": C,
            "y": y,
            "frontier": idx,
            "law": law,
            "groups": groups,
            "n_groups": int(groups.max()) + 1,
            "chance": chance,
            "at_chance": at_chance(y, chance),
            "gamma_q": gamma_q(C, y, groups=groups, chance=chance),
            "text_metric": text_name,
        }
    return out
