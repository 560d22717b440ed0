"""What a benchmark *is*, for trial keys: its pairs and its units, wherever their files sit.

A trial's key must not change when the same benchmark is reached through another folder (a
laptop's copy, a cluster mount), and must change when its gold files or its units do.  The gold
side is hashed as the pairs the loader reads from it (pair members, item, voice, the columns
the breakdowns use, the groups left out and why): exactly what scoring depends on, not the
bytes or paths of the files.  The units side is `units.dataset_digest`.

Pure core: no Ray, no MLflow.
"""

from __future__ import annotations

from pathlib import Path

from slmscale import units as units_io
from slmscale.evaluate.formats import load_pairs
from slmscale.hashing import sha256_json


def pairs_digest(name: str, root: str | Path, split: str) -> str:
    """Hex SHA-256 of the pairs benchmark `name` defines under `root` (a UserError if its gold
    files are missing or malformed, as when scoring)."""
    bp = load_pairs(name, root, split)
    pairs = [[p.pos, p.neg, list(p.item), p.voice, p.info] for p in bp.pairs]
    return sha256_json(
        {"name": name, "split": split, "pairs": pairs, "problems": bp.problems, "n": bp.n_total}
    )


def benchmark_digest(name: str, units: str | Path, root: str | Path, split: str) -> str | None:
    """16-hex content digest of a benchmark (its pairs and its units dataset), or None when
    either is not on disk (planning a grid whose benchmarks are not tokenized yet: keep paths)."""
    if not units_io.is_units_dataset(units) or not Path(root).exists():
        return None
    return sha256_json(
        {"units": units_io.dataset_digest(units), "pairs": pairs_digest(name, root, split)}, 16
    )
