"""Writes the demo's speech corpus as a LibriSpeech-like tree, one story per utterance.

    <out>/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac

`split` is `train-clean` (training) or `test-clean` (held out, for the test loss), or
`train-audiobook`: the data ablation's second training corpus, passages of sentences from
independent stories (language.sample_passage) instead of stories.  Each voice is one speaker;
chapters hold 25 utterances each.  Pure core: numpy and soundfile.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from slmscale.demo.language import sample_passage, sample_story
from slmscale.demo.render import SAMPLE_RATE, SPEAKERS, PhoneBank, render
from slmscale.progress import Progress

STORIES_PER_CHAPTER = 25
# Chapter numbers per split, so utterance ids are unique across the whole corpus (as in LibriSpeech).
FIRST_CHAPTER = {"train-clean": 1000, "train-audiobook": 3000, "test-clean": 5000}
AUDIOBOOK_SPLIT = "train-audiobook"
# Seed streams: each corpus split and benchmark draws from its own, so sizes never interact.
STREAMS = {
    "train-clean": 1,
    "test-clean": 2,
    "sblimp": 3,
    "swuggy": 4,
    "story_cloze": 5,
    "topic_cloze": 6,
    "train-audiobook": 7,
}


@dataclass(frozen=True)
class Utterance:
    """One written file and what it says: enough to check it and to explain it."""

    path: str  # relative to the world root
    n_samples: int
    voice: str
    text: str


def write_audio(path: Path, audio: np.ndarray) -> None:
    """Write 16-bit audio (flac or wav, by suffix) under a temporary name, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    sf.write(tmp, audio, SAMPLE_RATE, subtype="PCM_16")
    os.replace(tmp, path)


def text(sentences) -> str:
    return " . ".join(" ".join(s) for s in sentences)


PARALLEL_FROM = 400  # stories; fewer render faster than a worker process starts


def write_corpus(
    root: Path, split: str, n_stories: int, seed: int, bank: PhoneBank, workers: int | None = None
) -> list[Utterance]:
    """`n_stories` stories (audiobook passages for AUDIOBOOK_SPLIT) under `root/split`,
    deterministic from `seed`.

    Each story has its own random stream ([seed, split, index]), so the stories render in
    `workers` processes (default: one per core, for PARALLEL_FROM stories or more) to the same
    files and the same manifest as in one.
    """
    workers = workers or ((os.cpu_count() or 1) if n_stories >= PARALLEL_FROM else 1)
    chunks = [range(i, min(i + 100, n_stories)) for i in range(0, n_stories, 100)]
    out: list[Utterance] = []
    with Progress(n_stories, f"demo world: {split}", " stories") as bar:
        if workers <= 1:
            for chunk in chunks:
                out += write_stories(root, split, seed, bank, chunk)
                bar.update(len(chunk))
            return out
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        # spawn: the caller may hold torch's threads, which a fork must not copy
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(write_stories, root, split, seed, bank, c) for c in chunks]
            for chunk, future in zip(chunks, futures, strict=True):
                out += future.result()
                bar.update(len(chunk))
    return out


def write_stories(
    root: Path, split: str, seed: int, bank: PhoneBank, indices: range
) -> list[Utterance]:
    """Render and write the stories `indices` of `split` (one worker's share)."""
    stream = STREAMS[split]
    out: list[Utterance] = []
    for i in indices:
        rng = np.random.default_rng([seed, stream, i])
        if split == AUDIOBOOK_SPLIT:
            sentences = list(sample_passage(rng))
        else:
            sentences = list(sample_story(rng).sentences)
        v = int(rng.integers(len(SPEAKERS)))
        spk, chapter = 100 + v, FIRST_CHAPTER[split] + i // STORIES_PER_CHAPTER
        rel = Path(split, str(spk), str(chapter), f"{spk}-{chapter}-{i:04d}.flac")
        audio = render(sentences, SPEAKERS[v].name, bank, [seed, stream, i])
        write_audio(root / rel, audio)
        out.append(Utterance(rel.as_posix(), int(audio.size), SPEAKERS[v].name, text(sentences)))
    return out
