"""Everything about resume: what a checkpoint holds, writing it atomically, reading it back safely.

A checkpoint is one directory holding `state.pt` and `manifest.json`.  `state.pt` has the model and
optimizer state, the optimizer step (the LR schedule is a pure function of it), the position in
the data stream (tokens consumed: the stream is addressed by offset, see slmscale.corpus), the RNG
states of torch, numpy and python (and CUDA when present), and the running counters the metrics
need.  Restoring all of it makes a resumed trial compute exactly what an uninterrupted one would
(bit-exact on CPU with deterministic settings).

Trust: everything in `state.pt` is tensors and plain containers (the numpy and python RNG states
are stored as tensors and ints), so it is read with `torch.load(weights_only=True)`: a tampered
file on shared storage cannot run code.  `manifest.json` records the file's size and SHA-256, so a
truncated or corrupted file is caught before it is used, and named.  A trial keeps its two newest
checkpoints (`ckpt-<step>` folders under its checkpoint root; Ray Train keeps two as well): when
the newest is unusable the previous one is used, and when none is, the trial starts over; both
are said on stderr with the path and the reason.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from slmscale.hashing import sha256_file

STATE_FILE = "state.pt"
MANIFEST_FILE = "manifest.json"
PREFIX = "ckpt-"
KEEP = 2

Warn = Callable[[str], None]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names its path and why."""


@dataclass
class Progress:
    """Counters that travel with a checkpoint."""

    step: int = 0  # optimizer steps done
    tokens_seen: int = 0  # = the data stream position
    train_seconds: float = 0.0  # time spent in training steps (for the average tokens/s)
    # Runtime memory settings learned the hard way (an out-of-memory error halved the
    # micro-batch): a resumed trial does not have to run out of memory again to find them.
    micro_batch: int = 0  # 0: not set
    activation_checkpointing: bool = False
    periodic_eval_tokens: int = 0  # test tokens scored by the periodic evaluations so far


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rng_state() -> dict:
    """RNG states as tensors and ints only (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {
            "version": int(version),
            "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss": py_gauss,
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss"]))
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
    manifest = {"file": STATE_FILE, "bytes": (tmp / STATE_FILE).stat().st_size}
    manifest["sha256"] = sha256_file(tmp / STATE_FILE)
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest))
    old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory


def checkpoint_name(step: int) -> str:
    """`ckpt-<step>`, zero-padded so names sort by step (also Ray Train's folder name)."""
    return f"{PREFIX}{step:010d}"


def save_into(
    root: str | Path,
    model: torch.nn.Module,
    optimizer,
    progress: Progress,
    keep: int | None = KEEP,
) -> Path:
    """Write checkpoint `root/ckpt-<step>`; with `keep`, delete all but the `keep` newest."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = save_checkpoint(root / checkpoint_name(progress.step), model, optimizer, progress)
    if keep is not None:
        for old in candidates(root)[keep:]:
            shutil.rmtree(old, ignore_errors=True)
    return path


def candidates(root: str | Path | None) -> list[Path]:
    """Checkpoint folders under `root`, newest first; `root` itself when it is a checkpoint."""
    if root is None:
        return []
    root = Path(root)
    if (root / STATE_FILE).is_file():
        return [root]
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(PREFIX) and p.is_dir()]
    return sorted(found, key=lambda p: p.name, reverse=True)


def read_state(directory: str | Path) -> dict:
    """The verified contents of one checkpoint; CheckpointError naming the file otherwise."""
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    manifest_path = Path(directory) / MANIFEST_FILE
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
            size, digest = int(manifest["bytes"]), str(manifest["sha256"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{manifest_path}: unreadable manifest ({exc})") from None
        actual = path.stat().st_size
        if actual != size:
            raise CheckpointError(
                f"{path}: {actual:,} bytes, the manifest says {size:,} (truncated)"
            )
        if sha256_file(path) != digest:
            raise CheckpointError(f"{path}: SHA-256 differs from its manifest (corrupted)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: unreadable ({type(exc).__name__}: {first[:300]})") from None
    if not isinstance(state, dict) or not {"model", "optimizer", "progress", "rng"} <= set(state):
        raise CheckpointError(f"{path}: not a slmscale checkpoint")
    return state


def _check_fits(state: dict, model: torch.nn.Module, path: Path) -> None:
    """Refuse a state whose tensors do not fit the model before touching the model."""
    own = model.state_dict()
    theirs = state["model"]
    if set(own) != set(theirs):
        raise CheckpointError(f"{path}: holds another model (parameter names differ)")
    for name, t in own.items():
        if tuple(theirs[name].shape) != tuple(t.shape):
            raise CheckpointError(f"{path}: {name} has shape {tuple(theirs[name].shape)}")
    known = {f.name for f in fields(Progress)}
    if not set(state["progress"]) <= known:
        raise CheckpointError(f"{path}: unknown progress fields")


def load_checkpoint(directory: str | Path, model: torch.nn.Module, optimizer) -> Progress:
    """Restore model, optimizer and RNG states from one checkpoint; return the counters."""
    state = read_state(directory)
    _check_fits(state, model, Path(directory) / STATE_FILE)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    return Progress(**state["progress"])


def restore(
    directories: Iterable[str | Path],
    model: torch.nn.Module,
    optimizer,
    warn: Warn = _stderr,
) -> Progress | None:
    """Load the newest usable checkpoint of `directories` (newest first); None when none is.

    Every unusable one is named with the reason; falling back and starting over are said.
    """
    tried = 0
    for directory in directories:
        tried += 1
        try:
            progress = load_checkpoint(directory, model, optimizer)
        except CheckpointError as exc:
            warn(f"checkpoint: {exc}; trying the previous checkpoint")
            continue
        if tried > 1:
            warn(f"checkpoint: resumed from the previous checkpoint {directory}")
        return progress
    if tried:
        warn(f"checkpoint: none of the {tried} checkpoint(s) is usable; starting the trial over")
    return None


def scratch_prefix(key: str) -> str:
    return f"slmscale-{key}-ckpt-"


def make_scratch(key: str, tmp_root: str | Path | None = None) -> Path:
    """A private scratch folder `slmscale-<key>-ckpt-<pid>-*` in the temp folder (see sweep)."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix=f"{scratch_prefix(key)}{os.getpid()}-", dir=tmp_root))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_scratch(key: str, tmp_root: str | Path | None = None) -> list[Path]:
    """Remove scratch folders of trial `key` whose process is gone (a killed worker leaves its
    copy behind: gigabytes at 823M).  Returns what was removed."""
    import tempfile

    root = Path(tmp_root or tempfile.gettempdir())
    removed = []
    prefix = scratch_prefix(key)
    for path in root.glob(f"{prefix}*"):
        pid = path.name[len(prefix) :].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
