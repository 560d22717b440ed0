"""Known corpus layouts: which split a file of a folder tree belongs to, read from its folders.

A researcher points `--input` at a corpus as downloaded.  Hash-splitting such a tree would mix a
corpus's own evaluation audio into training, so folders that name a split win over the hash split:

- LibriSpeech (`LibriSpeech/train-clean-100/84/121123/*.flac`, also when the root is given):
  `dev-clean`, `dev-other`, `test-clean`, `test-other` are their own splits; files under
  `train-clean-100`, `train-clean-360`, `train-other-500` keep the utterance-id hash split (the
  paper's 1% held-out test set is taken from the training audio).  LibriLight (`small/`,
  `medium/`, `large/`, `duplicate/`) has no evaluation folders: hash split, as any corpus.
- ZeroSpeech 2021 sLM21 (`lexical|syntactic|semantic|phonetic/dev|test/*.wav`, or a `dev`/`test`
  folder holding a `gold.csv`): the split is `dev` or `test`.
- Spoken StoryCloze / TopicCloze (TWIST releases: a flat folder of `<story>_<label>*.wav`, label
  `correct`/`incorrect`/`true`/`false`/...): a benchmark, never training audio: split `test`
  (the release is the StoryCloze test set), or the folder's own name when it is `dev`/`test`.
- Any tree with more than one of the folders `train`, `dev`, `valid`, `validation`, `test`:
  split by those folders.  A tree with only one of them keeps the hash split.

Pure core: pathlib and re only.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

LIBRISPEECH_TRAIN = frozenset({"train-clean-100", "train-clean-360", "train-other-500"})
LIBRISPEECH_EVAL = frozenset({"dev-clean", "dev-other", "test-clean", "test-other"})
ZEROSPEECH_TASKS = frozenset({"lexical", "syntactic", "semantic", "phonetic"})
BENCHMARK_SPLITS = frozenset({"dev", "test"})
GENERIC_SPLITS = frozenset({"train", "dev", "valid", "validation", "test"})
CLOZE_STEM = re.compile(r"^[^_]+_(correct|incorrect|true|false|pos|neg|positive|negative|wrong)\b")

HASH = "hash"  # a training folder: leave the file to the utterance-id hash split


def _zerospeech_split(root: Path, folders: tuple[str, ...]) -> str | None:
    parts = (*root.parts, *folders)
    for i in range(len(parts) - 1, 0, -1):
        if parts[i] in BENCHMARK_SPLITS and parts[i - 1] in ZEROSPEECH_TASKS:
            return parts[i]
    return None


def _cloze_split(root: Path, rows: list[dict]) -> str | None:
    """A flat folder whose files are all named like TWIST StoryCloze members."""
    stems = [PurePosixPath(r["utterance_id"]).name for r in rows]
    if not stems or any("/" in r["utterance_id"] for r in rows):
        return None
    if sum(bool(CLOZE_STEM.match(s.lower())) for s in stems) < 0.9 * len(stems):
        return None
    return root.name if root.name in BENCHMARK_SPLITS else "test"


def folder_split(root: Path, folders: tuple[str, ...], generic: bool) -> str | None:
    """The split a file's folders name (`HASH` for a training folder), or None."""
    for part in reversed((root.name, *folders)):
        if part in LIBRISPEECH_EVAL:
            return part
        if part in LIBRISPEECH_TRAIN:
            return HASH
    zs = _zerospeech_split(root, folders)
    if zs is not None:
        return zs
    if root.name in BENCHMARK_SPLITS and (root / "gold.csv").is_file():
        return root.name
    if generic:
        for part in reversed(folders):
            if part in GENERIC_SPLITS:
                return part
    return None


def folder_splits(root: Path, rows: list[dict]) -> None:
    """Set `split` on the rows of a folder tree whose folders name one (see module docstring)."""
    cloze = _cloze_split(root, rows)
    if cloze is not None:
        for r in rows:
            r.setdefault("split", None)
            r["split"] = r["split"] or cloze
        return
    folders = [tuple(PurePosixPath(r["utterance_id"]).parts[:-1]) for r in rows]
    named = {p for f in folders for p in f if p in GENERIC_SPLITS}
    generic = len(named) > 1
    for r, f in zip(rows, folders, strict=True):
        split = folder_split(root, f, generic)
        if split not in (None, HASH) and not r.get("split"):
            r["split"] = split
