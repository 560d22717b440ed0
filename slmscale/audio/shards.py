"""Shards of a tokenization run: planning, per-item work, writing, resume.  Pure core, no Ray.

Inputs are sorted (dataset, utterance id) and cut into fixed-size shards, so shard i always holds
the same inputs and a rerun knows which are done: `shard-NNNNN.parquet` exists only once all of
its inputs are either rows in it or rejects in `.tokenize/rejects-NNNNN.parquet` (written first).
The plan's fingerprint is kept in `.tokenize/plan.json`; rerunning into a directory made from
other inputs or another tokenizer is refused instead of silently mixing.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from slmscale.audio.io import DUPLICATE_PREFIX, AudioItem, BadAudio, decode_item
from slmscale.audio.unit_encoder import UnitEncoder
from slmscale.errors import UserError
from slmscale.units import (
    REJECTS_FILE,
    REJECTS_SCHEMA,
    UNITS_SCHEMA,
    write_json_atomic,
    write_table_atomic,
)

WORK_DIR = ".tokenize"
PRECISION_FILE = "precision.json"
RESULT_FIELDS = ("shard", "utterance_id", "dataset", "split", "source", "error")
ProgressFn = Callable[[float], None]


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


@dataclass
class Plan:
    out: Path
    shards: list[list[AudioItem]]
    fingerprint: str
    done: set[int] = field(default_factory=set)
    precision: str | None = None  # compute precision of the shards written so far

    def set_precision(self, precision: str) -> None:
        """Record the encoder's compute precision; refuse to mix precisions in one dataset."""
        if self.precision is None:
            self.precision = precision
            write_json_atomic(self.out / WORK_DIR / PRECISION_FILE, {"precision": precision})
        elif precision != self.precision:
            raise UserError(
                f"--out {self.out}: its units so far were computed in {self.precision}, this "
                f"run's encoder computes in {precision}; rerun with --precision {self.precision} "
                "or use a new --out directory"
            )

    @property
    def n_inputs(self) -> int:
        return sum(len(s) for s in self.shards)

    def pending(self) -> list[int]:
        return [i for i in range(len(self.shards)) if i not in self.done]


def mark_duplicates(items: list[AudioItem]) -> list[AudioItem]:
    """Utterance ids are unique within a dataset: a second file with the same id is a reject
    (named with the file that kept the id; `decode_item` reports its own defect first)."""
    seen: dict[tuple[str, str], str] = {}
    out = []
    for it in items:
        key = (it.dataset, it.utterance_id)
        if key in seen:
            it = replace(
                it,
                error=f"{DUPLICATE_PREFIX} {it.utterance_id!r} in {it.dataset} "
                f"(already used by {seen[key]})",
            )
        seen.setdefault(key, it.source)
        out.append(it)
    return out


def make_plan(out: str | Path, items: list[AudioItem], identity: dict, shard_size: int) -> Plan:
    """Deterministic shards; refuse an output directory that holds a different run."""
    out = Path(out)
    if shard_size < 1:
        raise UserError(f"--shard-size {shard_size}: must be at least 1")
    items = mark_duplicates(sorted(items, key=lambda it: (it.dataset, it.utterance_id, it.source)))
    blob = json.dumps(
        {"identity": identity, "shard_size": shard_size, "items": [asdict(i) for i in items]},
        sort_keys=True,
    ).encode()
    fingerprint = hashlib.sha256(blob).hexdigest()
    plan_file = out / WORK_DIR / "plan.json"
    if plan_file.is_file():
        old = json.loads(plan_file.read_text()).get("fingerprint")
        if old != fingerprint:
            raise UserError(
                f"--out {out}: holds a tokenization of other inputs or with another tokenizer; "
                "use a new --out directory (or delete this one)"
            )
    else:
        write_json_atomic(plan_file, {"fingerprint": fingerprint, "identity": identity})
    shards = [items[i : i + shard_size] for i in range(0, len(items), shard_size)]
    done = {i for i in range(len(shards)) if (out / shard_name(i)).is_file()}
    precision_file = out / WORK_DIR / PRECISION_FILE
    precision = None
    if done and precision_file.is_file():
        precision = json.loads(precision_file.read_text()).get("precision")
    elif not done:
        precision_file.unlink(missing_ok=True)
    return Plan(out, shards, fingerprint, done, precision)


def item_rows(plan: Plan, shard_ids: list[int]) -> list[dict]:
    """The pending inputs as plain dicts (what a Ray dataset is built from)."""
    return [{"shard": s, **asdict(it)} for s in shard_ids for it in plan.shards[s]]


def decode_rows(
    rows: list[dict], cache: dict | None = None
) -> list[tuple[dict, np.ndarray | None]]:
    """Decode each input; a bad one gets its reason in `error` and no audio."""
    out = []
    for row in rows:
        item = AudioItem(**{k: row[k] for k in AudioItem.__dataclass_fields__})
        try:
            out.append(({**row, "error": ""}, decode_item(item, cache)))
        except BadAudio as exc:
            out.append(({**row, "error": str(exc)}, None))
    return out


def encode_rows(
    decoded: list[tuple[dict, np.ndarray | None]],
    encoder: UnitEncoder,
    on_progress: ProgressFn | None = None,
) -> list[dict]:
    """Units for every decoded input; audio shorter than one frame becomes a reject.

    `on_progress(seconds)` hears of the audio encoded, batch by batch (see `UnitEncoder`)."""
    field_ = encoder.encoder.receptive_field
    results, good, waves = [], [], []
    for row, wave in decoded:
        res = {k: row.get(k, "") for k in RESULT_FIELDS}
        res.update(units=b"", durations=b"", n_frames=0, seconds=0.0)
        res["precision"] = encoder.encoder.precision
        if wave is not None and encoder.encoder.n_frames(len(wave)) == 0:
            res["error"] = f"shorter than one frame ({len(wave)} samples < {field_} at 16 kHz)"
        elif wave is not None:
            good.append(len(results))
            waves.append(wave)
            res["seconds"] = len(wave) / encoder.encoder.sample_rate
        results.append(res)
    for i, enc in zip(good, encoder.encode(waves, on_progress), strict=True):
        results[i].update(
            units=enc.units.tobytes(), durations=enc.durations.tobytes(), n_frames=enc.n_frames
        )
    return results


class ShardWriter:
    """Collects result rows per shard and writes a shard the moment all its inputs are in."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.rows: dict[int, list[dict]] = defaultdict(list)
        self.written = 0

    def add(self, result: dict) -> None:
        if not result["error"] and result.get("precision"):
            self.plan.set_precision(result["precision"])
        s = int(result["shard"])
        self.rows[s].append(result)
        if len(self.rows[s]) == len(self.plan.shards[s]):
            self._write(s, self.rows.pop(s))

    def _write(self, s: int, rows: list[dict]) -> None:
        bad = [r for r in rows if r["error"]]
        good = sorted((r for r in rows if not r["error"]), key=lambda r: r["utterance_id"])
        rejects = pa.table(
            {c: [r[c] for r in bad] for c in ("source", "dataset", "error")}, schema=REJECTS_SCHEMA
        )
        write_table_atomic(rejects, self.plan.out / WORK_DIR / f"rejects-{s:05d}.parquet")
        table = pa.table(
            {
                "utterance_id": [r["utterance_id"] for r in good],
                "dataset": [r["dataset"] for r in good],
                "split": [r["split"] for r in good],
                "units": [np.frombuffer(r["units"], np.uint16) for r in good],
                "durations": [np.frombuffer(r["durations"], np.uint16) for r in good],
                "n_frames": [int(r["n_frames"]) for r in good],
                "seconds": [float(r["seconds"]) for r in good],
                "source": [r["source"] for r in good],
            },
            schema=UNITS_SCHEMA,
        )
        write_table_atomic(table, self.plan.out / shard_name(s))
        self.plan.done.add(s)
        self.written += 1


def run_local(
    plan: Plan,
    encoder: UnitEncoder,
    writer: ShardWriter,
    on_progress: ProgressFn | None = None,
    on_result: Callable[[dict], None] | None = None,
) -> None:
    """The same work as the Ray pipeline, in this process (no Ray needed: GPU bench machine)."""
    cache: dict = {}
    for s in plan.pending():
        rows = item_rows(plan, [s])
        for start in range(0, len(rows), 64):
            chunk = rows[start : start + 64]
            for res in encode_rows(decode_rows(chunk, cache), encoder, on_progress):
                writer.add(res)
                if on_result is not None:
                    on_result(res)


def merge_rejects(plan: Plan) -> pa.Table:
    """All per-shard rejects -> rejects.parquet at the root."""
    parts = [
        pq.read_table(plan.out / WORK_DIR / f"rejects-{s:05d}.parquet", schema=REJECTS_SCHEMA)
        for s in range(len(plan.shards))
    ]
    table = pa.concat_tables(parts) if parts else REJECTS_SCHEMA.empty_table()
    write_table_atomic(table, plan.out / REJECTS_FILE)
    return table


def count_units(out: str | Path, n_shards: int) -> dict:
    """counts[dataset][split] = {utterances, seconds, frames, units}, read back from the shards."""
    counts: dict = {}
    for s in range(n_shards):
        t = pq.read_table(
            Path(out) / shard_name(s), columns=["dataset", "split", "units", "n_frames", "seconds"]
        )
        if t.num_rows == 0:
            continue
        t = t.append_column("n_units", pc.list_value_length(t["units"]))
        agg = t.group_by(["dataset", "split"]).aggregate(
            [("n_frames", "sum"), ("seconds", "sum"), ("n_units", "sum"), ("n_frames", "count")]
        )
        for r in agg.to_pylist():
            c = counts.setdefault(r["dataset"], {}).setdefault(
                r["split"], {"utterances": 0, "seconds": 0.0, "frames": 0, "units": 0}
            )
            c["utterances"] += r["n_frames_count"]
            c["seconds"] += r["seconds_sum"]
            c["frames"] += r["n_frames_sum"]
            c["units"] += r["n_units_sum"]
    return counts
