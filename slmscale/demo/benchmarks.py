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


def write_sblimp(root: Path, n_items: int, seed: int, bank: PhoneBank, split: str = "dev"):
    """Grammatical sentences against the same sentence with one subject-verb agreement error."""
    out, rows, utts = audio_dir(root, "sblimp", split), [], []
    for i in range(n_items):
        rng = np.random.default_rng([seed, STREAMS["sblimp"], i])
        subtype, good = lang.sample_sentence(rng)
        bad = lang.flip_agreement(good)
        write = _pair_writer(out, root, bank, [seed, STREAMS["sblimp"], i])
        for voice in _voices(rng):
            for correct, sentence in ((1, good), (0, bad)):
                stem = f"sb{i:05d}{voice}{'g' if correct else 'u'}"
                utts.append(write(stem, [sentence], voice))
                rows.append(
                    {
                        "filename": stem,
                        "type": "subject_verb_agreement",
                        "subtype": subtype,
                        "id": i,
                        "voice": voice,
                        "correct": correct,
                        "transcription": lang.sentence_text(sentence),
                    }
                )
    _write_gold(out / "gold.csv", SBLIMP_COLUMNS, rows)
    return utts


def write_swuggy(root: Path, n_items: int, seed: int, bank: PhoneBank, split: str = "dev"):
    """Each content word of the lexicon against a non-word one phone away, in turn."""
    out, rows, utts = audio_dir(root, "swuggy", split), [], []
    words = lang.word_forms()
    for i in range(n_items):
        rng = np.random.default_rng([seed, STREAMS["swuggy"], i])
        word = words[i % len(words)]
        fake = lang.nonword(word, rng)
        write = _pair_writer(out, root, bank, [seed, STREAMS["swuggy"], i])
        for voice in _voices(rng):
            for correct, form in ((1, word), (0, fake)):
                stem = f"wu{i:05d}{voice}{'w' if correct else 'n'}"
                utts.append(write(stem, [(form,)], voice))
                rows.append(
                    {
                        "filename": stem,
                        "correct": correct,
                        "id": i,
                        "voice": voice,
                        "frequency": 1 if correct else 0,
                        "word": form,
                        "phones": " ".join(form),
                        "length": len(form),
                    }
                )
    _write_gold(out / "gold.csv", SWUGGY_COLUMNS, rows)
    return utts


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
