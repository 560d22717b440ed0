"""The units dataset: the contract between stage 1 (tokenize) and everything after it.

A directory of Parquet shards plus `_meta.json` and `_rejects.parquet` (the units contract):

    units/
      _meta.json              encoder, k-means hash, K, dedup, counts per dataset and split
      shard-00000.parquet     utterance_id, dataset, split, units, durations, n_frames, seconds, source
      _rejects.parquet        source, error  (inputs = rows in shards + rows here, always)
      _token_stores/          the packed training tokens (slmscale.tokenstore)

Side files start with `_` (work folders with `.`) because that is what Parquet readers skip: so
`pd.read_parquet(units)`, `pyarrow.dataset.dataset(units)` and `ray.data.read_parquet(units)` read
exactly the shards, unchanged.

Identity.  What a dataset *is* (what trial keys and token-store keys hash) is `dataset_digest`:
the tokenizer's identity (encoder, k-means content, K, dedup, ...) and the content of its rows,
never where the inputs, the k-means file or the dataset itself sat (slmscale.units_digest).

Pure core: pyarrow and json only.  Writers go through `write_table_atomic` so a crash never
leaves a half-written shard under its final name.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from slmscale.errors import UserError
from slmscale.hashing import sha256_file, sha256_json  # noqa: F401  (sha256_file: re-exported)

META_FILE = "_meta.json"
REJECTS_FILE = "_rejects.parquet"
SHARD_GLOB = "shard-*.parquet"


def meta_path(root: str | Path) -> Path:
    """Where a units dataset's meta lives."""
    return Path(root) / META_FILE


def is_units_dataset(root: str | Path) -> bool:
    return meta_path(root).is_file()


#: Held-out splits: never trained on.  `test` is also what the test loss is measured on; the
#: others (LibriSpeech's dev-clean, a corpus's valid/ folder) are simply left out of training.
HELD_OUT_SPLITS = ("test", "dev", "valid", "validation", "val", "eval")


def is_training_split(split: str) -> bool:
    """Whether a grid may train on utterances of this split: all but held-out ones.

    `test`, `dev`, `valid`, ... and their variants (`dev-clean`, `test_other`) are held out;
    everything else (`train`, `train-clean-100`, a name of the user's) is training data.  One
    rule for the token store, the dry run's available tokens and the planner's U_D.
    """
    name = str(split).lower()
    return not any(name == h or name.startswith((f"{h}-", f"{h}_")) for h in HELD_OUT_SPLITS)


UNITS_SCHEMA = pa.schema(
    [
        ("utterance_id", pa.string()),
        ("dataset", pa.string()),
        ("split", pa.string()),
        ("units", pa.list_(pa.uint16())),
        ("durations", pa.list_(pa.uint16())),
        ("n_frames", pa.int32()),
        ("seconds", pa.float32()),
        ("source", pa.string()),
    ]
)
REJECTS_SCHEMA = pa.schema(
    [("source", pa.string()), ("dataset", pa.string()), ("error", pa.string())]
)

# `_meta.json` keys that define the tokenizer: units made with different values must never be mixed.
# `encoder_id` is content-based (log-mel parameters; `hubert:<hash of config + weights>`), never a
# path; `precision` is the encoder's compute precision (fp32, or bf16 autocast on GPUs).
TOKENIZER_IDENTITY_KEYS = (
    "encoder",
    "encoder_id",
    "layer",
    "frame_rate",
    "sample_rate",
    "kmeans_sha256",
    "n_units",
    "dedup",
    "unigram_sha256",
    "precision",
)
# Units datasets written before `precision` was recorded were computed in fp32 unless their
# encoder_id names a path (those never match a content-based id anyway).
IDENTITY_DEFAULTS = {"precision": "fp32"}


def _is_disk_full(exc: BaseException) -> bool:
    return getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or (
        "No space left on device" in str(exc) or "Disk quota exceeded" in str(exc)
    )


def _write_via_tmp(path: str | Path, write: Callable[[Path], None], size_hint: int) -> None:
    """Write with `write(tmp)` beside `path`, then rename: readers never see half a file.

    On any failure the temporary file is removed; a full disk becomes a one-line `UserError`
    naming the path, the space free there and about how much this file needed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, Exception) and _is_disk_full(exc):
            raise UserError(disk_full_message(path, size_hint)) from None
        raise


def disk_full_message(path: str | Path, needed: int) -> str:
    """`PATH: no space left on device (X MB free on DIR, this file needs about Y MB)`."""
    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = f"{shutil.disk_usage(folder).free / 1e6:,.1f} MB free on {folder}"
    except OSError:
        free = f"free space on {folder} unknown"
    return (
        f"{path}: no space left on device ({free}, this file needs about {needed / 1e6:,.1f} MB); "
        "free some space or choose another --out, then rerun: finished files are kept and "
        "the partial one was removed"
    )


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write to a temporary name beside `path`, then rename: readers never see half a file."""
    _write_via_tmp(path, lambda tmp: tmp.write_bytes(data), len(data))


def write_json_atomic(path: str | Path, obj) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def write_table_atomic(table: pa.Table, path: str | Path) -> None:
    """Parquet through a temporary name (see `write_bytes_atomic`)."""
    _write_via_tmp(path, lambda tmp: pq.write_table(table, tmp), table.nbytes)


def load_meta(root: str | Path) -> dict:
    """`_meta.json` of a units dataset; a UserError naming the path if it is missing or broken."""
    path = meta_path(root)
    if not path.is_file():
        raise UserError(
            f"{root}: not a units dataset (no {META_FILE}); make one with `slmscale tokenize`"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None


def tokenizer_identity(meta: dict) -> dict:
    """The part of `_meta.json` that says how units were made (no paths: content only)."""
    return {k: meta.get(k, IDENTITY_DEFAULTS.get(k)) for k in TOKENIZER_IDENTITY_KEYS}


def identity_diff(a: dict, b: dict) -> list[str]:
    """The tokenizer-identity keys in which two `_meta.json` dicts differ (empty: same tokenizer)."""
    ia, ib = tokenizer_identity(a), tokenizer_identity(b)
    return [k for k in TOKENIZER_IDENTITY_KEYS if ia[k] != ib[k]]


def identity_matches(a: dict, b: dict) -> bool:
    """True when two units datasets were made by the same tokenizer (same encoder weights,
    layer, precision, k-means file content, K, dedup, unigram model), wherever the files lay."""
    return not identity_diff(a, b)


def tokenizer_fingerprint(meta: dict) -> str:
    """A short stable hash of the tokenizer identity (encoder, layer, k-means, K, dedup, unigram)."""
    blob = json.dumps(tokenizer_identity(meta), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def dataset_digest(root: str | Path) -> str:
    """What a units dataset is, in 16 hex: its tokenizer identity and its rows' content.

    The same units made in another folder, from inputs elsewhere, with the k-means file moved,
    or the dataset copied to a cluster, get the same digest; other units or another tokenizer
    get another.  Cheap: the shards' content digests are recorded in `_meta.json` when the
    dataset is written (`slmscale.units_digest`); older datasets are hashed once per process.
    """
    from slmscale.units_digest import recorded_shard_digests

    meta = load_meta(root)
    shards = recorded_shard_digests(root, meta)
    return sha256_json({"tokenizer": tokenizer_identity(meta), "shards": shards}, 16)


def meta_hash(root: str | Path) -> str:
    """The dataset's content digest (`dataset_digest`); the name predates it (grid callers)."""
    return dataset_digest(root)


def tokenizer_name(meta: dict) -> str:
    """Label for the `tokenizer` param, e.g. `hubert25hz-k500`, `logmel100hz-k50`, `unigram5000`."""
    if meta.get("unigram_sha256"):
        return f"unigram{meta.get('vocab_size', meta.get('n_units'))}"
    rate = meta.get("frame_rate")
    rate_s = f"{rate:g}hz" if isinstance(rate, int | float) else ""
    k = meta.get("kmeans_k", meta.get("n_units"))
    return f"{meta.get('encoder', 'units')}{rate_s}-k{k}"


def n_units(meta: dict) -> int:
    """The LM's unit vocabulary: K for k-means units, the SentencePiece vocab for unigram units."""
    return int(meta["n_units"])


def check_same_tokenizer(metas: dict[str, dict]) -> None:
    """Refuse to mix units made by different encoders, k-means or unigram models."""
    items = list(metas.items())
    if not items:
        return
    ref_path, ref = items[0]
    for path, meta in items[1:]:
        diff = identity_diff(ref, meta)
        if diff:
            raise UserError(
                f"{path}: units made by a different tokenizer than {ref_path} "
                f"(differs in {', '.join(diff)}); re-tokenize with the same encoder and k-means"
            )


def shard_paths(root: str | Path) -> list[Path]:
    return sorted(Path(root).glob(SHARD_GLOB))


def read_units(
    root: str | Path,
    *,
    datasets: list[str] | None = None,
    splits: list[str] | None = None,
    columns: list[str] | None = None,
) -> pa.Table:
    """All rows of a units dataset (optionally some datasets/splits), in shard order."""
    paths = shard_paths(root)
    load_meta(root)
    tables = []
    for p in paths:
        t = pq.read_table(p, columns=columns)
        if datasets is not None:
            t = t.filter(pa.compute.is_in(t["dataset"], pa.array(datasets)))
        if splits is not None:
            t = t.filter(pa.compute.is_in(t["split"], pa.array(splits)))
        tables.append(t)
    if not tables:
        schema = (
            UNITS_SCHEMA if columns is None else pa.schema([UNITS_SCHEMA.field(c) for c in columns])
        )
        return schema.empty_table()
    return pa.concat_tables(tables)


def read_rejects(root: str | Path) -> pa.Table:
    path = Path(root) / REJECTS_FILE
    return pq.read_table(path) if path.is_file() else REJECTS_SCHEMA.empty_table()
