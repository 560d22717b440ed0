"""Finding a Hugging Face model offline, and naming it by what it is rather than where it is.

Offline first: a `--model` is a local `save_pretrained` directory or a hub id already in the
local Hugging Face cache, and it is loaded with `local_files_only=True`, so nothing tries the
network (a missing model used to cost ~50 s of hub retries before failing).  `--allow-download`
(or `allow_download=True`) lets transformers fetch a hub id.  `resolve_model` runs before torch or
transformers are imported, so a missing model is one line in well under a second.

Identity by content: `content_digest` hashes the model's config (minus bookkeeping such as
`_name_or_path` and `transformers_version`) and every weight tensor (name, dtype, shape, bytes),
so the same weights under `./models/x/` and `models/x` are one tokenizer, and a different
checkpoint under the same name or hub id is another.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from slmscale.errors import UserError

HOW_TO_PROVIDE = (
    "give a local save_pretrained directory, or fetch the hub id once with "
    "`hf download ID` (or rerun with --allow-download)"
)


def _looks_like_path(model: str) -> bool:
    """A hub id is `name` or `org/name`; anything else can only be a path."""
    return (
        model.startswith((".", "/", "~"))
        or model.count("/") > 1
        or os.sep in model.replace("/", "")
    )


def _hub_cache_has(repo_id: str) -> bool:
    """Whether the local hub cache holds this model's config.json (no network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # an id the hub would reject (bad characters): not cached
        return False
    return isinstance(found, str)


def resolve_model(model: str, allow_download: bool = False) -> str:
    """The `--model` to load: an existing directory (absolute), or a cached (or allowed) hub id."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(
                f"--model {model}: the directory has no config.json (not a save_pretrained model)"
            )
        return str(path.resolve())
    if path.exists():
        raise UserError(f"--model {model}: is a file; give the model's directory")
    if _looks_like_path(model):
        raise UserError(f"--model {model}: no such directory; {HOW_TO_PROVIDE}")
    if allow_download or _hub_cache_has(model):
        return model
    raise UserError(
        f"--model {model}: no such directory, and not in the local Hugging Face cache "
        f"({_cache_dir()}); {HOW_TO_PROVIDE}"
    )


def _cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def config_digest(config_dict: dict) -> str:
    """SHA-256 of a model config without the fields that say where or with what it was saved."""
    kept = {
        k: v
        for k, v in config_dict.items()
        if not k.startswith("_") and k not in ("transformers_version", "name_or_path")
    }
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def content_digest(model) -> str:
    """SHA-256 over the config digest and every parameter and buffer, in name order."""
    import torch

    h = hashlib.sha256(config_digest(model.config.to_dict()).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        h.update(t.numpy())
    return h.hexdigest()
