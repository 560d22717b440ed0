"""Expand a grid spec into trials: sizes x budgets x epochs x seeds, each a typed `Trial`.

Pure core (no Ray, no MLflow).  A trial (slmscale.trial) holds everything that determines a
training run; its key hashes exactly that, so the same resolved trial always gets the same key
and any change to it (size, budget, optimizer, schedule, data, seed, ...) gives another.
Resources are not part of a trial: moving it to another machine does not make it a different
experiment.  Steps, warmup and FLOPs are the trial's own properties, computed by the training
core (slmscale.train.schedule, slmscale.model), never here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slmscale import units as units_io
from slmscale.config.grid import GridBlock, GridSpec
from slmscale.errors import UserError
from slmscale.model import ModelShape, budget_reference_params, default_batch_size
from slmscale.tokenstore import FORMAT as TOKEN_STORE_FORMAT
from slmscale.trial import Benchmark, DataSource, EvalPlan, Optimizer, Schedule, Trial


@dataclass(frozen=True)
class DataInfo:
    """What the grid knows about its training data: present on disk, or declared for planning."""

    sources: tuple[DataSource, ...]
    available_tokens: float
    n_units: int
    tokenizer: str
    present: bool


def passes(trial: Trial, data: DataInfo) -> float:
    """D / all available training tokens (the paper's "passes" over the corpus)."""
    return trial.tokens / data.available_tokens


def row(trial: Trial, data: DataInfo) -> dict:
    """A trial as one row of the dry-run table / the grid run's trial table."""
    return {
        "trial_key": trial.key,
        "model_size": trial.model_size,
        "n_params": trial.n_params,
        "n_params_total": trial.n_params_total,
        "tokens": trial.tokens,
        "unique_tokens": trial.unique_tokens,
        "epochs": trial.epochs,
        "passes": passes(trial, data),
        "seed": trial.seed,
        "batch_size": trial.batch_size,
        "steps": trial.steps,
        "warmup_steps": trial.warmup_steps,
        "flops": trial.flops,
        "flops_full": trial.flops_full,
    }


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
            sources.append(_source(src, str(path), units_io.dataset_digest(path)))
            available += _units_tokens(meta, src.datasets)
        else:
            sources.append(_source(src, str(path), None))
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
            tuple(sources),
            available,
            units_io.n_units(meta),
            spec.tokenizer or units_io.tokenizer_name(meta),
            True,
        )
    tokenizer = spec.tokenizer or f"hubert25hz-k{spec.n_units}"
    return DataInfo(tuple(sources), available, spec.n_units, tokenizer, False)


def _source(src, path: str, digest: str | None) -> DataSource:
    datasets = tuple(src.datasets) if src.datasets is not None else None
    return DataSource(path, src.weight, src.in_test, datasets, digest)


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


def _unique_tokens(tokens: int, epochs, available: float, where: str) -> int:
    """U_D for a budget of `tokens` at `epochs` (auto: all the data once, repeated as needed)."""
    if epochs == "auto":
        return int(min(tokens, available))
    unique = int(round(tokens / epochs))
    if unique > available:
        raise UserError(
            f"{where}: needs {unique:,} unique tokens ({tokens:,} tokens / {epochs:g} epochs) but the "
            f"data holds {int(available):,}; declare more epochs or use epochs: auto"
        )
    return unique


def expand_grid(spec: GridSpec, data: DataInfo) -> list[Trial]:
    """Every trial of the spec, main grid first then each `extra` block, without duplicates."""
    trials: dict[str, Trial] = {}
    common = dict(
        n_units=data.n_units,
        context=spec.context,
        tokenizer=data.tokenizer,
        data=data.sources,
        data_order=TOKEN_STORE_FORMAT,  # a new store order is new data: new trials
        optimizer=Optimizer(**spec.optimizer.model_dump()),
        schedule=Schedule(**spec.schedule.model_dump()),
        eval=EvalPlan(**spec.eval.model_dump(exclude={"periodic_cost"})),
        precision=spec.train.precision,
        benchmarks=tuple(_benchmark(bm) for bm in spec.benchmarks),
    )
    for b, block in enumerate(spec.blocks()):
        where_block = "grid" if b == 0 else f"extra[{b - 1}]"
        for m in block.models:
            shape = m.shape()
            for d in _budgets(block, shape):
                for e in block.epochs:
                    where = f"{where_block}: {shape.name} at D={d:,}"
                    unique = _unique_tokens(d, e, data.available_tokens, where)
                    for seed in block.seeds or [spec.seed]:
                        trial = Trial(
                            shape=shape,
                            tokens=d,
                            unique_tokens=unique,
                            batch_size=_batch_size(spec, shape),
                            seed=seed,
                            block=b,
                            **common,
                        )
                        trials.setdefault(trial.key, trial)
    return list(trials.values())


def _benchmark(bm) -> Benchmark:
    """A spec's benchmark, named by the content of its pairs and units when they are on disk
    (so the same benchmark in another folder keeps the trial's key), else by its paths."""
    from slmscale.evaluate.identity import benchmark_digest

    digest = benchmark_digest(bm.name, bm.units, bm.root, bm.split)
    return Benchmark(bm.name, bm.units, bm.root, bm.split, bm.score, digest)


def gpu_hours(trial: Trial, mfu: float, peak_flops: float) -> float:
    """Estimated GPU-hours at a model-FLOPs utilisation `mfu` of `peak_flops` per GPU (MFU's
    FLOP count: 6N plus uncausal attention, slmscale.model.flops_per_token)."""
    return trial.flops_with_attention / (mfu * peak_flops) / 3600.0
