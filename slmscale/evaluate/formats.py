"""Benchmark layouts as distributed -> pairs of (positive, negative) utterance names.

Pure core (csv and pathlib only).  Each loader reads the benchmark's own description of which
utterances belong together (gold.csv for ZeroSpeech 2021, file names for the TWIST StoryCloze
release), never the order of files on disk.  Layouts are documented in docs/evaluate.md.

A `Pair` names its two utterances by file stem, the `item` it belongs to (what the official score
averages over voices within) and the `voice`; `info` carries what the breakdowns group by.
Malformed groups (a key with two grammatical sentences, a story with no true ending) are not
errors: they are listed in `BenchmarkPairs.problems` and left out, so one bad row never costs the
whole benchmark.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from slmscale.errors import UserError

BENCHMARKS = ("sblimp", "swuggy", "topic_cloze", "story_cloze")

# Labels in TWIST StoryCloze file names: <story_id>_<label>[_anything].wav
POSITIVE_LABELS = frozenset({"correct", "true", "pos", "positive"})
NEGATIVE_LABELS = frozenset({"incorrect", "false", "neg", "negative", "wrong"})
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


@dataclass(frozen=True)
class Pair:
    pos: str  # file stem of the positive utterance (grammatical / word / true ending)
    neg: str  # file stem of the negative one
    item: tuple[str, ...]  # what the official score averages voices within
    voice: str = ""
    info: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass
class BenchmarkPairs:
    name: str
    split: str
    source: str  # the gold file or directory the pairs were read from
    pairs: list[Pair]
    problems: list[str]  # groups that could not form a pair (each one line)
    n_total: int  # pairs the benchmark defines, including the ones that could not be formed


def _read_gold(path: Path, required: tuple[str, ...]) -> list[dict]:
    """Rows of a gold.csv as dicts; columns found by header name, in any order."""
    if not path.is_file():
        raise UserError(f"{path}: no such file (expected the benchmark's gold.csv here)")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise UserError(
                f"{path}: missing column(s) {', '.join(missing)} (header: {', '.join(header)})"
            )
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    for i, row in enumerate(rows):
        if row["correct"] not in ("0", "1"):
            raise UserError(f"{path}: row {i + 2}: correct must be 0 or 1, got {row['correct']!r}")
    return rows


def _pairs_from_gold(
    rows: list[dict], key_cols: tuple[str, ...], item_cols: tuple[str, ...], info_cols: tuple
) -> tuple[list[Pair], list[str], int]:
    """Group gold rows by `key_cols`; each group must hold one correct=1 and one correct=0 row."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[tuple(row[c] for c in key_cols)].append(row)
    pairs, problems = [], []
    for key, members in groups.items():
        pos = [r for r in members if r["correct"] == "1"]
        neg = [r for r in members if r["correct"] == "0"]
        if len(pos) != 1 or len(neg) != 1:
            where = ", ".join(f"{c}={v}" for c, v in zip(key_cols, key, strict=True))
            problems.append(f"{where}: {len(pos)} positive and {len(neg)} negative rows")
            continue
        p, n = pos[0], neg[0]
        info = {c: p[c] for c in info_cols if c in p}
        info.update({f"neg_{c}": n[c] for c in info_cols if c in n and n[c] != p.get(c)})
        pairs.append(
            Pair(
                pos=Path(p["filename"]).stem,
                neg=Path(n["filename"]).stem,
                item=tuple(p[c] for c in item_cols),
                voice=p.get("voice", ""),
                info=info,
            )
        )
    pairs.sort(key=lambda q: (q.item, q.voice))
    return pairs, problems, len(groups)


def load_sblimp(root: str | Path, split: str) -> BenchmarkPairs:
    """ZeroSpeech 2021 syntactic: pairs = same (type, subtype, id, voice) in gold.csv."""
    gold = Path(root) / "syntactic" / split / "gold.csv"
    cols = ("filename", "type", "subtype", "id", "voice", "correct")
    rows = _read_gold(gold, cols)
    pairs, problems, total = _pairs_from_gold(
        rows,
        key_cols=("type", "subtype", "id", "voice"),
        item_cols=("type", "subtype", "id"),
        info_cols=("type", "subtype", "transcription"),
    )
    return BenchmarkPairs("sblimp", split, str(gold), pairs, problems, total)


def load_swuggy(root: str | Path, split: str) -> BenchmarkPairs:
    """ZeroSpeech 2021 lexical: pairs = same (id, voice) in gold.csv (word vs non-word).

    The word's `frequency` (occurrences in LibriSpeech, official column) is kept in `info`: the
    in-vocab score leaves out the pairs whose word never occurs there."""
    gold = Path(root) / "lexical" / split / "gold.csv"
    rows = _read_gold(gold, ("filename", "id", "voice", "correct"))
    pairs, problems, total = _pairs_from_gold(
        rows, key_cols=("id", "voice"), item_cols=("id",), info_cols=("word", "frequency")
    )
    return BenchmarkPairs("swuggy", split, str(gold), pairs, problems, total)


def _cloze_label(stem: str) -> tuple[str, bool | None]:
    """'12_correct' -> ('12', True); '12_incorrect_x' -> ('12', False); unknown label -> None."""
    story, _, rest = stem.partition("_")
    label = rest.split("_", 1)[0].lower()
    if label in POSITIVE_LABELS:
        return story, True
    if label in NEGATIVE_LABELS:
        return story, False
    return story, None


def _story_order(story: str) -> tuple:
    """Numeric story ids in numeric order (the release numbers its stories), others after."""
    return (0, int(story), "") if story.isdigit() else (1, 0, story)


def load_cloze(name: str, root: str | Path, split: str) -> BenchmarkPairs:
    """TWIST spoken StoryCloze / TopicCloze: `<story_id>_<correct|incorrect>*.wav` per story."""
    root = Path(root)
    folder = root / split if (root / split).is_dir() else root
    if not folder.is_dir():
        raise UserError(f"{root}: no such directory (expected the {name} wav files here)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise UserError(f"{folder}: no audio files (expected <story_id>_correct.wav etc.)")
    stories: dict[str, dict[bool, list[str]]] = defaultdict(lambda: {True: [], False: []})
    problems = []
    for p in files:
        story, label = _cloze_label(p.stem)
        if label is None:
            problems.append(f"{p.name}: no correct/incorrect label after the story id")
            continue
        stories[story][label].append(p.stem)
    pairs = []
    for story, members in sorted(stories.items(), key=lambda kv: _story_order(kv[0])):
        pos, neg = members[True], members[False]
        if len(pos) != 1 or len(neg) != 1:
            problems.append(f"story {story}: {len(pos)} true and {len(neg)} negative endings")
            continue
        pairs.append(Pair(pos=pos[0], neg=neg[0], item=(story,)))
    return BenchmarkPairs(name, split, str(folder), pairs, problems, len(stories))


def load_pairs(name: str, root: str | Path, split: str) -> BenchmarkPairs:
    """The pairs of benchmark `name` (sblimp | swuggy | topic_cloze | story_cloze) under `root`."""
    if name == "sblimp":
        return load_sblimp(root, split)
    if name == "swuggy":
        return load_swuggy(root, split)
    if name in ("topic_cloze", "story_cloze"):
        return load_cloze(name, root, split)
    raise UserError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})")
