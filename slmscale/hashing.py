"""The house's content hashes: one SHA-256 of a file, one of a JSON-able value.

Pure core (hashlib and json only), so the training core, the audio stage, the token store and the
grid all import the same two functions: identities computed in different places must agree.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

CHUNK = 1 << 22  # 4 MiB per read: a multi-GB file never sits in memory


def sha256_file(path: str | Path, chunk: int = CHUNK) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(value, length: int | None = None) -> str:
    """Hex SHA-256 of canonical JSON (sorted keys, no spaces), cut to `length` characters.

    Canonical so that the same value hashes the same whatever order its dicts were built in."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()
    return digest if length is None else digest[:length]
