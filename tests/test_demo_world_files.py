"""The demo world on disk: valid audio of the planned length, complete gold files, reuse."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from slmscale.demo import language as lang
from slmscale.demo.render import SAMPLE_RATE, PhoneBank, plan_segments, render
from slmscale.demo.world import MANIFEST, PRESETS, build_world

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("world")
    manifest, reused = build_world(root, TINY)
    assert not reused
    return root, manifest


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_every_file_is_valid_audio_of_its_planned_length(world):
    root, manifest = world
    n = 0
    for files in manifest["files"].values():
        for u in files:
            audio, sr = sf.read(root / u["path"], dtype="float32")
            assert sr == SAMPLE_RATE and audio.ndim == 1
            assert audio.size == u["n_samples"]
            assert np.isfinite(audio).all() and 0.01 < np.sqrt(np.mean(audio**2)) < 0.5
            n += 1
    on_disk = [p for p in root.rglob("*") if p.suffix in (".flac", ".wav")]
    assert n == len(on_disk) > 0


def test_librispeech_layout(world):
    root, manifest = world
    train = manifest["files"]["train-clean"]
    assert len(train) == TINY.train_stories
    for u in train:
        split, spk, chapter, name = Path(u["path"]).parts
        assert split == "train-clean" and name == f"{spk}-{chapter}-{name.split('-')[2]}"
        assert name.endswith(".flac")


def test_render_length_is_the_planned_length():
    bank = PhoneBank()
    story = lang.sample_story(np.random.default_rng(1))
    segs = plan_segments(list(story.sentences), np.random.default_rng([5, 0]))
    audio = render(list(story.sentences), "v1", bank, [5])
    assert audio.size == sum(s.n_samples for s in segs)
    assert sum(s.phone is not None for s in segs) == sum(len(w) for s in story.sentences for w in s)


@pytest.mark.parametrize("name,sub", [("sblimp", "syntactic"), ("swuggy", "lexical")])
def test_gold_pairs_are_complete(world, name, sub):
    root, _ = world
    folder = root / "benchmarks" / name / sub / "dev"
    rows = list(csv.DictReader(open(folder / "gold.csv")))
    keys = Counter((r["id"], r["voice"], r["correct"]) for r in rows)
    ids = {(r["id"], r["voice"]) for r in rows}
    assert all(keys[(i, v, c)] == 1 for i, v in ids for c in ("0", "1"))
    assert len(rows) == 2 * len(ids) == 2 * 2 * getattr(TINY, f"{name}_items")
    assert all((folder / f"{r['filename']}.wav").is_file() for r in rows)
    if name == "swuggy":
        assert all((r["word"] in lang.LEXICON) == (r["correct"] == "1") for r in rows)
    else:
        for r in rows:
            sentence = tuple(r["transcription"].split(" (")[0].split())
            assert lang.agreement_violations(sentence) == 1 - int(r["correct"])


@pytest.mark.parametrize("name", ["story_cloze", "topic_cloze"])
def test_cloze_pairs_are_complete_and_share_their_context_audio(world, name):
    root, _ = world
    folder = root / "benchmarks" / name / "dev"
    stems = sorted(p.stem for p in folder.glob("*.wav"))
    assert len(stems) == 2 * TINY.cloze_stories
    for i in range(TINY.cloze_stories):
        good, _ = sf.read(folder / f"{i}_correct.wav", dtype="float32")
        bad, _ = sf.read(folder / f"{i}_incorrect.wav", dtype="float32")
        assert np.array_equal(good[:SAMPLE_RATE], bad[:SAMPLE_RATE])
        assert not np.array_equal(good[-SAMPLE_RATE:], bad[-SAMPLE_RATE:])


def test_world_is_deterministic_and_reused(world, tmp_path):
    root, manifest = world
    again, reused = build_world(root, TINY)
    assert reused and again == manifest
    other = tmp_path / "again"
    assert build_world(other, TINY)[0]["files"] == manifest["files"]
    assert _digest(other) == _digest(root)
    changed = build_world(tmp_path / "seed1", replace(TINY, seed=1))[0]
    assert changed["files"] != manifest["files"]


def test_stories_rendered_in_two_processes_are_the_ones_rendered_in_one(tmp_path):
    from slmscale.demo.corpus import write_corpus
    from slmscale.demo.render import PhoneBank

    bank = PhoneBank(seed=0)
    one = write_corpus(tmp_path / "one", "train-clean", 130, 0, bank, workers=1)
    two = write_corpus(tmp_path / "two", "train-clean", 130, 0, bank, workers=2)
    assert one == two and len(one) == 130
    assert _digest(tmp_path / "one") == _digest(tmp_path / "two")


def test_utterance_ids_are_unique_across_splits(world):
    _, manifest = world
    ids = [
        Path(u["path"]).stem
        for split in ("train-clean", "test-clean")
        for u in manifest["files"][split]
    ]
    assert len(ids) == len(set(ids)) == TINY.train_stories + TINY.test_stories
