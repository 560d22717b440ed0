"""The demo's four benchmarks, written in the layouts they are distributed in (docs/evaluate.md).

    sblimp/syntactic/<split>/<filename>.wav + gold.csv   agreement violation vs grammatical
    swuggy/lexical/<split>/<filename>.wav + gold.csv     non-word vs word of the lexicon
    story_cloze/<split>/<id>_{correct,incorrect}.wav     ending that breaks the causal pattern
    topic_cloze/<split>/<id>_{correct,incorrect}.wav     ending from a story on another topic

Both members of a pair are rendered with the same seed and voice: they share the audio of their
common beginning exactly, so a pair differs only where its words do.  Pure core.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np

from slmscale.demo import language as lang
from slmscale.demo.corpus import STREAMS, Utterance, text, write_audio
from slmscale.demo.render import SPEAKERS, VOICES, PhoneBank, render
from slmscale.progress import Progress
from slmscale.units import write_bytes_atomic

SBLIMP_COLUMNS = ("filename", "type", "subtype", "id", "voice", "correct", "transcription")
SWUGGY_COLUMNS = ("filename", "correct", "id", "voice", "frequency", "word", "phones", "length")
# sBLIMP and sWUGGY items are spoken in both voices of the bank: the training speaker and one
# the corpora never use (the paper's sBLIMP/sWUGGY are TTS voices, its sTinyStories one speaker).
# The cloze benchmarks are spoken by the training speaker, as stories are.
VOICES_PER_ITEM = 2

# name -> directory of its audio under the benchmark's root
BENCHMARK_DIRS = {
    "sblimp": "syntactic",
    "swuggy": "lexical",
    "story_cloze": "",
    "topic_cloze": "",
}


def audio_dir(root: Path, name: str, split: str) -> Path:
    """Where a benchmark's wav files (and gold.csv) are: the input to `slmscale tokenize`."""
    sub = BENCHMARK_DIRS[name]
    return root / name / sub / split if sub else root / name / split


def _write_gold(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_bytes_atomic(path, buf.getvalue().encode())


def _voices(rng: np.random.Generator) -> list[str]:
    idx = rng.choice(len(VOICES), size=VOICES_PER_ITEM, replace=False)
    return [VOICES[int(i)].name for i in sorted(idx)]


def _pair_writer(
    out: Path, root: Path, bank: PhoneBank, seed: list[int]
) -> Callable[[str, list, str], Utterance]:
    def write(stem: str, sentences: list, voice: str) -> Utterance:
        audio = render(sentences, voice, bank, seed)
        write_audio(out / f"{stem}.wav", audio)
        path = (out / f"{stem}.wav").relative_to(root).as_posix()
        return Utterance(path, audio.size, voice, text(sentences))

    return write


def _write_pairs(
    root: Path, name: str, prefix: str, n_items: int, seed: int, bank: PhoneBank, split: str,
    columns: tuple[str, ...], members: Callable,
) -> list[Utterance]:  # fmt: skip
    """A minimal-pair benchmark with its gold.csv: `members(i, rng)` gives item i's two members
    as (correct, sentence, stem suffix, its own gold.csv fields); each is spoken in
    VOICES_PER_ITEM voices."""
    out, rows, utts = audio_dir(root, name, split), [], []
    for i in range(n_items):
        key = [seed, STREAMS[name], i]
        rng = np.random.default_rng(key)
        pair = members(i, rng)
        write = _pair_writer(out, root, bank, key)
        for voice in _voices(rng):
            for correct, sentence, suffix, fields in pair:
                stem = f"{prefix}{i:05d}{voice}{suffix}"
                utts.append(write(stem, [sentence], voice))
                rows.append(
                    {"filename": stem, "id": i, "voice": voice, "correct": correct, **fields}
                )
    _write_gold(out / "gold.csv", columns, rows)
    return utts


def write_sblimp(root: Path, n_items: int, seed: int, bank: PhoneBank, split: str = "dev"):
    """Grammatical sentences against the same sentence with one subject-verb agreement error."""

    def members(i: int, rng: np.random.Generator) -> list:
        subtype, good = lang.sample_sentence(rng)
        return [
            (correct, s, suffix, {"type": "subject_verb_agreement", "subtype": subtype,
                                  "transcription": lang.sentence_text(s)})
            for correct, s, suffix in ((1, good, "g"), (0, lang.flip_agreement(good), "u"))
        ]  # fmt: skip

    return _write_pairs(root, "sblimp", "sb", n_items, seed, bank, split, SBLIMP_COLUMNS, members)


def write_swuggy(root: Path, n_items: int, seed: int, bank: PhoneBank, split: str = "dev"):
    """Each content word of the lexicon against a non-word one phone away, in turn."""
    words = lang.word_forms()

    def members(i: int, rng: np.random.Generator) -> list:
        word = words[i % len(words)]
        return [
            (correct, (form,), suffix, {"frequency": correct, "word": form,
                                        "phones": " ".join(form), "length": len(form)})
            for correct, form, suffix in ((1, word, "w"), (0, lang.nonword(word, rng), "n"))
        ]  # fmt: skip

    return _write_pairs(root, "swuggy", "wu", n_items, seed, bank, split, SWUGGY_COLUMNS, members)


def _cloze_negative(name: str, story: lang.Story, rng: np.random.Generator) -> lang.Sentence:
    if name == "story_cloze":
        return lang.broken_ending(story, rng)
    other = lang.pick(rng, [t for t in lang.TOPICS if t != story.topic])
    return lang.sample_story(rng, topic=other, pattern=story.pattern).ending


def write_cloze(
    root: Path, name: str, n_stories: int, seed: int, bank: PhoneBank, split: str = "dev"
):
    """Spoken StoryCloze / TopicCloze: each story's context with its true and its negative ending."""
    out, utts = audio_dir(root, name, split), []
    for i in range(n_stories):
        key = [seed, STREAMS[name], i]
        rng = np.random.default_rng(key)
        story = lang.sample_story(rng)
        voice = SPEAKERS[int(rng.integers(len(SPEAKERS)))].name
        negative = _cloze_negative(name, story, rng)
        write = _pair_writer(out, root, bank, key)
        utts.append(write(f"{i}_correct", list(story.sentences), voice))
        utts.append(write(f"{i}_incorrect", [*story.context, negative], voice))
    return utts


def write_benchmarks(
    root: Path, sizes: dict[str, int], seed: int, bank: PhoneBank, split: str = "dev"
) -> dict[str, list[Utterance]]:
    """All four benchmarks under `root`, `sizes[name]` items (pairs or stories) each."""
    writers = {
        "sblimp": lambda n: write_sblimp(root, n, seed, bank, split),
        "swuggy": lambda n: write_swuggy(root, n, seed, bank, split),
        "story_cloze": lambda n: write_cloze(root, "story_cloze", n, seed, bank, split),
        "topic_cloze": lambda n: write_cloze(root, "topic_cloze", n, seed, bank, split),
    }
    out = {}
    with Progress(len(writers), "demo world: benchmarks", " benchmarks") as bar:
        for name, write in writers.items():
            out[name] = write(sizes[name])
            bar.update(1, extra=name)
    return out
