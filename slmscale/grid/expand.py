"""Expand a grid spec into concrete trials: sizes x budgets x epochs, resolved and keyed.

Pure core (no Ray, no MLflow).  A `Trial` holds everything that determines a training run; its
`key` is a hash of exactly that, so the same resolved trial always gets the same key and any
change to it (size, budget, optimizer, data, seed, ...) gives another.  Resources are not part
of the key: moving a trial to another machine does not make it a different experiment.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from slmscale import units as units_io
from slmscale.config.grid import GridBlock, GridSpec
from slmscale.errors import UserError
from slmscale.model import (
    ModelShape,
    budget_reference_params,
    default_batch_size,
    flops_per_token,
    non_embedding_params,
    total_params,
    vocab_size,
)
from slmscale.tokenstore import FORMAT as TOKEN_STORE_FORMAT


@dataclass(frozen=True)
class DataSource:
    """One units dataset in the mixture, as resolved for a trial."""

    path: str
    weight: float
    in_test: bool
    datasets: list[str] | None
    meta_hash: str | None  # None when the dataset is not present (planning only)


@dataclass(frozen=True)
class DataInfo:
    """What the grid knows about its training data: present on disk, or declared for planning."""

    sources: list[DataSource]
    available_tokens: float
    n_units: int
    tokenizer: str
    present: bool


@dataclass(frozen=True)
class Trial:
    key: str
    model_size: str
    shape: ModelShape
    n_params: int
    n_params_total: int
    tokens: int  # D: tokens the trial trains on, exactly
    unique_tokens: int  # U_D
    epochs: float  # D / U_D
    passes: float  # D / all available training tokens
    batch_size: int  # sequences per optimizer step
    context: int
    steps: int
    warmup_steps: int
    flops: float  # 6 N D
    flops_with_attention: float  # (6N + attention) D, the FLOPs MFU is measured against
    config: dict = field(repr=False)  # the resolved trial config (what the key hashes)
    block: int = 0  # the spec block it came from (0: main grid; i + 1: extra[i]), for resources

    def row(self) -> dict:
        return {
            "trial_key": self.key,
            "model_size": self.model_size,
            "n_params": self.n_params,
            "n_params_total": self.n_params_total,
            "tokens": self.tokens,
            "unique_tokens": self.unique_tokens,
            "epochs": self.epochs,
            "passes": self.passes,
            "batch_size": self.batch_size,
            "steps": self.steps,
            "warmup_steps": self.warmup_steps,
            "flops": self.flops,
        }


def trial_identity(config: dict) -> dict:
    """What a trial *is*: its config, with each present units dataset named by its content.

    A dataset found on disk is identified by its meta.json hash, not its path, so the same data
    reached through another path (a laptop folder, a cluster mount, relative vs absolute) keeps
    the trial's key, and finished runs are still found.  Absent data (planning) keeps its path.
    """
    data = [{**src, "path": None} if src.get("meta_hash") else src for src in config["data"]]
    return {**config, "data": data}


def trial_key(config: dict) -> str:
    """Stable 16-hex hash of a resolved trial config's identity (canonical JSON)."""
    blob = json.dumps(trial_identity(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def warmup_steps(steps: int, min_steps: int, fraction: float) -> int:
    """max(min_steps, fraction x steps) (section 3.1), never more than the run has steps."""
    return min(steps, max(min_steps, int(fraction * steps)))


def _units_tokens(meta: dict, datasets: list[str] | None) -> int:
    """Training units in a dataset's meta counts (all splits except test)."""
    total = 0
    for name, splits in meta.get("counts", {}).items():
        if datasets is not None and name not in datasets:
            continue
        for split, c in splits.items():
            if units_io.is_training_split(split):
                total += int(c.get("units", 0))
    return total


def resolve_data(spec: GridSpec, spec_dir: Path | None = None) -> DataInfo:
    """Read the units datasets' meta when present; otherwise use the spec's declared numbers."""
    sources, metas, available = [], {}, 0.0
    for i, src in enumerate(spec.units):
        path = Path(src.path)
        if not path.is_absolute() and spec_dir is not None and not path.exists():
            path_alt = spec_dir / path
            path = path_alt if path_alt.exists() else path
        if units_io.is_units_dataset(path):
            meta = units_io.load_meta(path)
            metas[str(path)] = meta
            sources.append(
                DataSource(
                    str(path), src.weight, src.in_test, src.datasets, units_io.meta_hash(path)
                )
            )
            available += _units_tokens(meta, src.datasets)
        else:
            sources.append(DataSource(str(path), src.weight, src.in_test, src.datasets, None))
            if src.available_tokens is not None:
                available += src.available_tokens
            elif spec.available_tokens is None:
                raise UserError(
                    f"units[{i}]: units dataset {src.path!r} not found and no available_tokens "
                    "declared; run `slmscale tokenize` first or declare available_tokens for planning"
                )
    if spec.available_tokens is not None and not metas:
        available = spec.available_tokens
    units_io.check_same_tokenizer(metas)
    if available <= 0:
        where = "units" if metas else "available_tokens"
        raise UserError(
            f"{where}: the data holds no training tokens (every utterance is in a held-out "
            "split such as test or dev); tokenize training audio, or check the units' splits"
        )
    if metas:
        meta = next(iter(metas.values()))
        return DataInfo(
            sources,
            available,
            units_io.n_units(meta),
            spec.tokenizer or units_io.tokenizer_name(meta),
            True,
        )
    tokenizer = spec.tokenizer or f"hubert25hz-k{spec.n_units}"
    return DataInfo(sources, available, spec.n_units, tokenizer, False)


def _batch_size(spec: GridSpec, shape: ModelShape) -> int:
    if isinstance(spec.batch_size, int):
        return spec.batch_size
    if isinstance(spec.batch_size, dict) and shape.name in spec.batch_size:
        return spec.batch_size[shape.name]
    return default_batch_size(shape)


def _budgets(block: GridBlock, shape: ModelShape) -> list[int]:
    if block.tokens is not None:
        return [int(round(t)) for t in block.tokens]
    return [int(round(r * budget_reference_params(shape))) for r in block.d_over_n]


def _epochs_and_unique(tokens: int, epochs, available: float, where: str) -> tuple[float, int]:
    if epochs == "auto":
        unique = int(min(tokens, available))
        return tokens / unique, unique
    unique = int(round(tokens / epochs))
    if unique > available:
        raise UserError(
            f"{where}: needs {unique:,} unique tokens ({tokens:,} tokens / {epochs:g} epochs) but the "
            f"data holds {int(available):,}; declare more epochs or use epochs: auto"
        )
    return float(epochs), unique


def expand_grid(spec: GridSpec, data: DataInfo) -> list[Trial]:
    """Every trial of the spec, main grid first then each `extra` block, without duplicates."""
    trials: dict[str, Trial] = {}
    n_units = data.n_units
    for b, block in enumerate(spec.blocks()):
        where_block = "grid" if b == 0 else f"extra[{b - 1}]"
        for m in block.models:
            shape = m.shape()
            n = non_embedding_params(shape)
            batch = _batch_size(spec, shape)
            for d in _budgets(block, shape):
                for e in block.epochs:
                    ep, unique = _epochs_and_unique(
                        d, e, data.available_tokens, f"{where_block}: {shape.name} at D={d:,}"
                    )
                    steps = math.ceil(d / (batch * spec.context))
                    warm = warmup_steps(
                        steps, spec.optimizer.warmup_min_steps, spec.optimizer.warmup_fraction
                    )
                    config = {
                        "model": shape.to_dict(),
                        "n_units": n_units,
                        "tokens": d,
                        "unique_tokens": unique,
                        "batch_size": batch,
                        "context": spec.context,
                        "seed": spec.seed,
                        "optimizer": spec.optimizer.model_dump(),
                        # periodic_cost sizes the periodic test sample: not an identity
                        "eval": spec.eval.model_dump(exclude={"periodic_cost"}),
                        "train": {"precision": spec.train.precision},
                        "tokenizer": data.tokenizer,
                        "data": [asdict(s) for s in data.sources],
                        # How U_D tokens are drawn from the data (slmscale.tokenstore): a new
                        # order is new data, so it must make new trials, never resume old ones.
                        "data_order": TOKEN_STORE_FORMAT,
                        "benchmarks": [bm.model_dump() for bm in spec.benchmarks],
                    }
                    key = trial_key(config)
                    if key in trials:
                        continue
                    trials[key] = Trial(
                        key=key,
                        model_size=shape.name,
                        shape=shape,
                        n_params=n,
                        n_params_total=total_params(shape, vocab_size(n_units)),
                        tokens=d,
                        unique_tokens=unique,
                        epochs=ep,
                        passes=d / data.available_tokens,
                        batch_size=batch,
                        context=spec.context,
                        steps=steps,
                        warmup_steps=warm,
                        flops=6.0 * n * d,
                        flops_with_attention=flops_per_token(shape, spec.context) * d,
                        config=config,
                        block=b,
                    )
    return list(trials.values())


def gpu_hours(trial: Trial, mfu: float, peak_flops: float) -> float:
    """Estimated GPU-hours at a model-FLOPs utilisation `mfu` of `peak_flops` per GPU."""
    return trial.flops_with_attention / (mfu * peak_flops) / 3600.0
