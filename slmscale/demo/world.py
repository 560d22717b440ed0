"""The demo world on disk: corpus splits, benchmarks and a manifest, reused when already made.

    <root>/train-clean/...  <root>/test-clean/...   LibriSpeech-like trees (corpus.py)
    <root>/train-audiobook/...   the data ablation's "audiobook" corpus (when asked for)
    <root>/benchmarks/{sblimp,swuggy,story_cloze,topic_cloze}/...   (benchmarks.py)
    <root>/world.json       the config it was made from and every file with its length in samples

`world.json` is written last: when it exists with the same config, the world is complete and is
reused as it is.  Pure core.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from slmscale.demo.benchmarks import write_benchmarks
from slmscale.demo.corpus import AUDIOBOOK_SPLIT, write_corpus
from slmscale.demo.render import SAMPLE_RATE, PhoneBank
from slmscale.units import write_json_atomic

MANIFEST = "world.json"
TRAIN_SPLIT, TEST_SPLIT = "train-clean", "test-clean"
BENCHMARK_SPLIT = "dev"


@dataclass(frozen=True)
class WorldConfig:
    seed: int = 0
    train_stories: int = 4000
    test_stories: int = 120
    sblimp_items: int = 100  # x 2 voices x 2 members
    swuggy_items: int = 100  # x 2 voices x 2 members
    cloze_stories: int = 200  # per cloze benchmark, x 2 members
    audiobook_passages: int = 0  # the data ablation's second corpus (0: none)

    def benchmark_sizes(self) -> dict[str, int]:
        return {
            "sblimp": self.sblimp_items,
            "swuggy": self.swuggy_items,
            "story_cloze": self.cloze_stories,
            "topic_cloze": self.cloze_stories,
        }


# Named sizes: `tiny` for tests (a second or two), `quick` and `full` for the demo.
PRESETS: dict[str, WorldConfig] = {
    "tiny": WorldConfig(
        train_stories=240, test_stories=8, sblimp_items=6, swuggy_items=6, cloze_stories=6
    ),
    "quick": WorldConfig(train_stories=2000, test_stories=60, cloze_stories=120),
    # 9,000 stories (~1.08M units): the largest single-epoch budget of demo.yaml is 1M units.
    "full": WorldConfig(train_stories=9000, audiobook_passages=1600),
}


def load_manifest(root: Path) -> dict | None:
    path = Path(root) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def build_world(root: Path, config: WorldConfig) -> tuple[dict, bool]:
    """Render the world under `root` unless a complete one with this config is there.

    Returns (manifest, reused).
    """
    root = Path(root)
    manifest = load_manifest(root)
    if manifest is not None and manifest.get("config") == asdict(config):
        return manifest, True
    bank = PhoneBank(seed=config.seed)
    files = {
        TRAIN_SPLIT: write_corpus(root, TRAIN_SPLIT, config.train_stories, config.seed, bank),
        TEST_SPLIT: write_corpus(root, TEST_SPLIT, config.test_stories, config.seed, bank),
    }
    if config.audiobook_passages:
        files[AUDIOBOOK_SPLIT] = write_corpus(
            root, AUDIOBOOK_SPLIT, config.audiobook_passages, config.seed, bank
        )
    benches = write_benchmarks(
        root / "benchmarks", config.benchmark_sizes(), config.seed, bank, BENCHMARK_SPLIT
    )
    for name, utts in benches.items():  # paths relative to the world root, like the corpus's
        files[f"benchmarks/{name}"] = [replace(u, path=f"benchmarks/{u.path}") for u in utts]
    manifest = {
        "config": asdict(config),
        "sample_rate": SAMPLE_RATE,
        "files": {k: [asdict(u) for u in v] for k, v in files.items()},
        "seconds": {k: sum(u.n_samples for u in v) / SAMPLE_RATE for k, v in files.items()},
    }
    write_json_atomic(root / MANIFEST, manifest)
    return manifest, False
