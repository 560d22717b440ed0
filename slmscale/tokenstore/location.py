"""Where stores live: $SLMSCALE_CACHE/stores, else `_token_stores/` in the first units dataset,
else (that folder read-only, no cache set) the system temp folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from slmscale.errors import UserError

ENV_CACHE = "SLMSCALE_CACHE"  # stores live under $SLMSCALE_CACHE/stores when set
STORES_DIR = "_token_stores"  # default home: beside the (first) units dataset


def default_store_dir(data: list[dict]) -> Path:
    """$SLMSCALE_CACHE/stores when set, else `_token_stores/` inside the first units dataset
    (so on a cluster the store sits on the shared storage the units live on)."""
    root = os.environ.get(ENV_CACHE)
    if root:
        return Path(root) / "stores"
    return Path(data[0]["path"]) / STORES_DIR


def fallback_dir() -> Path:
    """Where stores go when the units dataset's folder is read-only and no cache is set."""
    return Path(tempfile.gettempdir()) / "slmscale-stores"


def store_dirs(data: list[dict], store_dir: str | Path | None) -> list[Path]:
    """The folders to look in (and build in, first writable wins), in order."""
    if store_dir is not None:
        return [Path(store_dir)]
    if os.environ.get(ENV_CACHE):
        return [default_store_dir(data)]
    return [default_store_dir(data), fallback_dir()]


def writable_dir(dirs: list[Path], log) -> Path:
    """The first of `dirs` that can be created and written (a lock file goes there)."""
    for i, d in enumerate(dirs):
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            why = exc.strerror
        else:
            if os.access(d, os.W_OK | os.X_OK):
                return d
            why = "not writable"
        if i + 1 < len(dirs):
            log(f"token store: {d} is {why}; using {dirs[i + 1]} (set {ENV_CACHE} to choose)")
        else:
            raise UserError(f"{d}: cannot hold the token store ({why}); set {ENV_CACHE}")
    raise AssertionError("no store folder candidates")
