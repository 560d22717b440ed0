"""Everything about resume: what a checkpoint holds, writing it atomically, reading it back.

A checkpoint is one directory holding `state.pt`: model and optimizer state, the optimizer step
(the LR schedule is a pure function of it), the position in the data stream (tokens consumed:
the stream is addressed by offset, see slmscale.corpus), the RNG states of torch, numpy and
python (and CUDA when present), and the running counters the metrics need.  Restoring all of it
makes a resumed trial compute exactly what an uninterrupted one would (bit-exact on CPU with
deterministic settings).
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

STATE_FILE = "state.pt"


@dataclass
class Progress:
    """Counters that travel with a checkpoint."""

    step: int = 0  # optimizer steps done
    tokens_seen: int = 0  # = the data stream position
    train_seconds: float = 0.0  # time spent in training steps (for the average tokens/s)


def rng_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    directory: str | Path, model: torch.nn.Module, optimizer, progress: Progress
) -> Path:
    """Write a checkpoint into `directory` (replaced atomically: never half-written)."""
    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "progress": asdict(progress),
            "rng": rng_state(),
        },
        tmp / STATE_FILE,
    )
    old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory


def has_checkpoint(directory: str | Path | None) -> bool:
    return directory is not None and (Path(directory) / STATE_FILE).is_file()


def load_checkpoint(directory: str | Path, model: torch.nn.Module, optimizer) -> Progress:
    """Restore model, optimizer and RNG states from `directory`; return the counters."""
    state = torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    return Progress(**state["progress"])
