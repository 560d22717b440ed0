"""Audio in, part one: find the inputs of a corpus (no audio is decoded here).

Pure core (csv, pyarrow): no Ray.  An input is a small `AudioItem` (where the bytes live, which
dataset and split it belongs to, its utterance id); slmscale.audio.io decodes it.

Three input kinds, all named `NAME[:SPLIT]=PATH` on the command line:
- a folder tree of audio files (flac, wav, ogg, mp3): utterance id = POSIX path relative to the
  root without extension, so LibriSpeech's `84/121123/84-121123-0000.flac` -> `84/121123/84-121123-0000`;
- a CSV/TSV manifest with a `path` column and optional `dataset`, `split`, `utterance_id`;
- Parquet with audio bytes (a binary `audio` column, or the Hugging Face `{bytes, path}` struct).

Splits: `NAME:SPLIT` wins, then a manifest's `split` column, then the corpus layout (`layouts.py`:
LibriSpeech's dev-*/test-* folders, ZeroSpeech 2021 dev/test, spoken StoryCloze/TopicCloze, a tree
with train/ and test/ folders), and only then the utterance-id hash split.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow.parquet as pq

from slmscale.audio.layouts import folder_splits
from slmscale.errors import UserError

AUDIO_EXTENSIONS = (".flac", ".wav", ".ogg", ".mp3", ".opus")
MANIFEST_EXTENSIONS = (".csv", ".tsv")
ID_COLUMNS = ("utterance_id", "id", "key")


@dataclass(frozen=True)
class InputSpec:
    """One `--input NAME[:SPLIT]=PATH`: a dataset name, an optional fixed split, a path."""

    dataset: str
    split: str | None
    path: str

    @classmethod
    def parse(cls, text: str) -> InputSpec:
        name, sep, path = text.partition("=")
        if not sep or not name or not path:
            raise UserError(
                f"--input {text!r}: expected NAME[:SPLIT]=PATH, e.g. librispeech=/data/LS"
            )
        dataset, _, split = name.partition(":")
        if not dataset:
            raise UserError(f"--input {text!r}: the dataset name is empty")
        return cls(dataset=dataset, split=split or None, path=path)


@dataclass(frozen=True)
class AudioItem:
    """Where one utterance's bytes are and what it is called.  `row` >= 0 means a Parquet row."""

    source: str
    dataset: str
    split: str
    utterance_id: str
    path: str
    row: int = -1
    column: str = ""
    error: str = ""  # set when planning already knows the input is bad (duplicate id)


DUPLICATE_PREFIX = "duplicate utterance_id"


def hash_split(utterance_id: str, test_fraction: float) -> str:
    """Deterministic held-out split by utterance-id hash, as the paper does for corpora without one."""
    h = int.from_bytes(hashlib.sha256(utterance_id.encode()).digest()[:8], "big")
    return "test" if h / 2.0**64 < test_fraction else "train"


def find_inputs(spec: InputSpec, test_fraction: float = 0.01) -> list[AudioItem]:
    """Every utterance of one input, sorted by utterance id (so shard assignment is deterministic)."""
    root = Path(spec.path)
    if root.is_dir():
        rows = _tree_rows(root)
    elif root.suffix.lower() in MANIFEST_EXTENSIONS and root.is_file():
        rows = _manifest_rows(root)
    elif root.suffix.lower() == ".parquet" and root.is_file():
        rows = _parquet_rows(root)
    elif not root.exists():
        raise UserError(f"--input {spec.dataset}={spec.path}: no such file or directory")
    else:
        raise UserError(
            f"--input {spec.dataset}={spec.path}: expected a folder, a .csv/.tsv manifest "
            "or a .parquet file"
        )
    if not rows:
        kinds = " ".join(AUDIO_EXTENSIONS) if root.is_dir() else "rows"
        raise UserError(
            f"--input {spec.dataset}={spec.path}: no audio inputs found (looked for {kinds}); "
            "check the path"
        )
    if root.is_dir():
        folder_splits(root, rows)
    items = []
    for r in rows:
        split = spec.split or r.get("split") or hash_split(r["utterance_id"], test_fraction)
        items.append(
            AudioItem(
                source=r["source"],
                dataset=r.get("dataset") or spec.dataset,
                split=split,
                utterance_id=r["utterance_id"],
                path=r["path"],
                row=r.get("row", -1),
                column=r.get("column", ""),
            )
        )
    return sorted(items, key=lambda it: (it.dataset, it.utterance_id, it.source))


def _tree_rows(root: Path) -> list[dict]:
    rows = []
    for p in root.rglob("*"):
        if p.suffix.lower() in AUDIO_EXTENSIONS and (p.is_file() or p.is_symlink()):
            rel = PurePosixPath(p.relative_to(root).as_posix())
            rows.append(
                {"source": str(p), "path": str(p), "utterance_id": str(rel.with_suffix(""))}
            )
    return rows


def _manifest_rows(path: Path) -> list[dict]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise UserError(f"{path}: manifest needs a 'path' column (has {reader.fieldnames})")
        rows = []
        for line_no, rec in enumerate(reader, start=2):
            if not rec.get("path"):
                raise UserError(f"{path}:{line_no}: empty 'path'")
            p = Path(rec["path"])
            full = p if p.is_absolute() else path.parent / p
            uid = rec.get("utterance_id") or PurePosixPath(p.as_posix()).with_suffix("").as_posix()
            rows.append(
                {
                    "source": str(full),
                    "path": str(full),
                    "utterance_id": uid,
                    "dataset": rec.get("dataset") or None,
                    "split": rec.get("split") or None,
                }
            )
    return rows


def _audio_column(path: Path, names: list[str]) -> str:
    for name in ("audio", "bytes", "wav", "flac"):
        if name in names:
            return name
    raise UserError(f"{path}: no audio column (expected 'audio'; columns are {names})")


def _parquet_rows(path: Path) -> list[dict]:
    """Row references only: the audio bytes stay on disk until a decode task reads them."""
    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    col = _audio_column(path, names)
    meta_cols = [c for c in (*ID_COLUMNS, "split", "dataset") if c in names]
    audio_type = pf.schema_arrow.field(col).type
    has_inner_path = hasattr(audio_type, "names") and "path" in getattr(audio_type, "names", [])
    read_cols = meta_cols + ([col] if has_inner_path else [])
    table = pf.read(columns=read_cols) if read_cols else None
    rows = []
    for i in range(pf.metadata.num_rows):
        rec = {c: table[c][i].as_py() for c in meta_cols} if table is not None else {}
        uid = next((str(rec[c]) for c in ID_COLUMNS if rec.get(c) is not None), None)
        if uid is None and has_inner_path:
            inner = table[col][i].as_py() or {}
            uid = PurePosixPath(inner.get("path") or "").stem or None
        rows.append(
            {
                "source": f"{path}#{i}",
                "path": str(path),
                "row": i,
                "column": col,
                "utterance_id": uid or f"{path.stem}-{i:07d}",
                "dataset": rec.get("dataset"),
                "split": rec.get("split"),
            }
        )
    return rows
