"""Content digests of a units dataset's shards: what the rows say, not where they came from.

Why not the files' SHA-256: a shard's bytes hold the `source` column (each input's path, so the
same audio tokenized in another folder makes other bytes) and the Parquet writer's version and
row-group layout.  A shard's digest hashes the values of every other column, each column a
stream of its own (lengths, bytes, values, null mask), so it does not depend on how the file is
cut into row groups or read in batches.

The tokenizer and the unigram encoder record every shard's digest in `_meta.json`
(`shard_digests`, written with the meta, after the shards), so the grid and every trial read a
dataset's identity from one small file.  A dataset without them (written before they were
recorded) is hashed from its shards, memoised per process by path, size and mtime.

Pure core: numpy and pyarrow only.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from slmscale.units import UNITS_SCHEMA, shard_paths

SHARD_DIGESTS = "shard_digests"  # _meta.json key: {shard file name: content digest}
CONTENT_COLUMNS = tuple(n for n in UNITS_SCHEMA.names if n != "source")
_BATCH_ROWS = 65_536  # rows decoded at a time: bounds memory whatever the shard size
_memo: dict[tuple, str] = {}


def _feed(streams: dict, name: str, data) -> None:
    streams.setdefault(name, hashlib.sha256()).update(data)


def _as_le(values: np.ndarray) -> np.ndarray:
    """Little-endian, contiguous: the same bytes on every machine."""
    return np.ascontiguousarray(values.astype(values.dtype.newbyteorder("<"), copy=False))


def _string_bytes(arr: pa.Array) -> memoryview | bytes:
    """The UTF-8 bytes of a (large_)string or binary array, its slice offset honoured."""
    large = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    width = 8 if large else 4
    buffers = arr.buffers()
    if buffers[2] is None or len(arr) == 0:
        return b""
    offsets = np.frombuffer(
        buffers[1], dtype=f"<i{width}", count=len(arr) + 1, offset=arr.offset * width
    )
    return memoryview(buffers[2])[int(offsets[0]) : int(offsets[-1])]


def _update(streams: dict, name: str, arr: pa.Array) -> None:
    """Feed one batch of column `name` into its streams (names say what each stream holds)."""
    if arr.null_count:
        _feed(streams, f"{name}.null", _as_le(pc.is_null(arr).to_numpy(zero_copy_only=False)))
    kind = arr.type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
        _feed(streams, f"{name}.len", _as_le(lengths.astype(np.int64)))
        _update(streams, f"{name}[]", arr.flatten())
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind):
        lengths = pc.fill_null(pc.binary_length(arr), 0).to_numpy(zero_copy_only=False)
        _feed(streams, f"{name}.len", _as_le(lengths.astype(np.int64)))
        _feed(streams, f"{name}.bytes", _string_bytes(arr))
    else:
        values = (pc.fill_null(arr, 0) if arr.null_count else arr).to_numpy(zero_copy_only=False)
        _feed(streams, f"{name}:{values.dtype.str[1:]}", _as_le(values))


def shard_digest(path: str | Path) -> str:
    """Hex SHA-256 of a shard's rows, every column but `source` (see the module docstring)."""
    pf = pq.ParquetFile(path)
    names = [c for c in CONTENT_COLUMNS if c in pf.schema_arrow.names]
    streams: dict = {}
    for batch in pf.iter_batches(batch_size=_BATCH_ROWS, columns=names, use_threads=False):
        for name in names:
            _update(streams, name, batch.column(name))
    h = hashlib.sha256(("columns:" + ",".join(names)).encode())
    for key in sorted(streams):
        h.update(key.encode() + b"\0" + streams[key].digest())
    return h.hexdigest()


def _memo_key(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


def shard_digests(root: str | Path) -> dict[str, str]:
    """{shard file name: content digest} of every shard, hashed now (memoised per process)."""
    out = {}
    for path in shard_paths(root):
        key = _memo_key(path)
        if key not in _memo:
            _memo[key] = shard_digest(path)
        out[path.name] = _memo[key]
    return out


def recorded_shard_digests(root: str | Path, meta: dict) -> list[str]:
    """The shards' digests in shard order: as recorded in the meta when it names exactly the
    shards on disk, else hashed from the shards (a dataset written before they were recorded)."""
    names = [p.name for p in shard_paths(root)]
    recorded = meta.get(SHARD_DIGESTS)
    if not (isinstance(recorded, dict) and sorted(recorded) == names):
        recorded = shard_digests(root)
    return [recorded[n] for n in names]
