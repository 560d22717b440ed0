"""From a spec file to runnable trial jobs, with every check that must pass before any trial
starts (edge-free: no Ray, no MLflow imports; the caller passes the experiment id).

Refused here, as one-line UserErrors (exit 2): a units dataset that is not present, units from
different tokenizers (resolve_data), a budget larger than the data without epochs (expand_grid),
and a model that cannot fit `resources.device_memory_gb` even one sequence at a time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from slmscale.config import load_grid_spec
from slmscale.config.grid import GridSpec, TrialResources
from slmscale.errors import UserError
from slmscale.grid.expand import DataInfo, expand_grid, resolve_data
from slmscale.grid.runner import TrialJob
from slmscale.paths import output_root
from slmscale.train.memory import choose_micro_batch, training_memory
from slmscale.train.options import RuntimeOptions
from slmscale.trial import Trial


@dataclass
class GridPlan:
    spec: GridSpec
    data: DataInfo
    trials: list[Trial]


def load_plan(spec_path: str, overrides: Sequence[str] = ()) -> GridPlan:
    """The spec (with `key=value` overrides applied and validated), its data and its trials."""
    spec = load_grid_spec(spec_path, overrides)
    data = resolve_data(spec, Path(spec_path).parent)
    return GridPlan(spec, data, expand_grid(spec, data))


def check_data_present(data: DataInfo) -> None:
    for i, src in enumerate(data.sources):
        if src.digest is None:
            raise UserError(
                f"units[{i}]: units dataset {src.path!r} not found; training needs the data "
                "(run `slmscale tokenize` first; available_tokens only serves --dry-run)"
            )


def trial_resources(spec: GridSpec, trial: Trial) -> TrialResources:
    """The trial's Ray resources: `resources.per_size` > its block's `resources` > the grid's."""
    blocks = spec.blocks()
    block = blocks[trial.block].resources if trial.block < len(blocks) else None
    return spec.resources.for_trial(trial.model_size, block)


@dataclass(frozen=True)
class MemoryPlan:
    """How a trial fits one device: micro-batch, activation checkpointing, predicted peak."""

    micro_batch: int | None  # None: the whole per-worker batch (no memory declared)
    checkpointing: bool
    predicted_gib: float | None  # None when no memory is declared
    device_memory_gb: float | None
    workers: int


def memory_plan(spec: GridSpec, trial: Trial, n_units: int) -> MemoryPlan:
    """The micro-batch a trial trains with: the spec's, or the largest that fits the memory
    declared for its workers (slmscale.train.memory); UserError when nothing fits."""
    res = trial_resources(spec, trial)
    workers, memory = res.workers, res.device_memory_gb
    per_worker = math.ceil(trial.batch_size / workers)
    wanted = spec.train.activation_checkpointing
    ckpt = None if wanted == "auto" else bool(wanted)
    if memory is None:
        return MemoryPlan(spec.train.micro_batch_size, bool(ckpt), None, None, workers)
    bf16 = spec.train.precision != "fp32"
    choice = choose_micro_batch(
        trial.shape, n_units, per_worker, trial.context, memory,
        bf16=bf16, checkpointing=ckpt, cap=spec.train.micro_batch_size,
    )  # fmt: skip
    if choice is None:
        need = training_memory(
            trial.shape, n_units, 1, trial.context, bf16=bf16, checkpointing=True
        ).gib
        raise UserError(
            f"resources.device_memory_gb: model {trial.model_size} needs about {need:.1f} GiB "
            f"even one sequence at a time with activation checkpointing, more than the "
            f"{memory:g} GiB declared; use more memory per worker or a smaller model"
        )
    return MemoryPlan(
        choice.micro_batch, choice.checkpointing, choice.estimate.gib, memory, workers
    )


def units_dataset_label(data: DataInfo) -> str:
    return ";".join(f"{s.path}@{s.digest}" for s in data.sources)


def default_storage_path(spec: GridSpec) -> str:
    return str(output_root() / "grid_runs" / spec.name)


def short_count(x: float) -> str:
    """150000 -> '150k', 4.94e9 -> '4.94B', 40e6 -> '40M': how budgets read in run names."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def run_names(trials: list[Trial]) -> dict[str, str]:
    """trial key -> a name to read in the MLflow runs table: `<size>-D<tokens>-e<epochs>`.

    Two trials that differ only in something the name does not show (e.g. the data of an
    ablation) get the first characters of their keys appended, so every name stays unique.
    """
    names = {t.key: f"{t.model_size}-D{short_count(t.tokens)}-e{t.epochs:.3g}" for t in trials}
    seen: dict[str, int] = {}
    for name in names.values():
        seen[name] = seen.get(name, 0) + 1
    return {k: (f"{n}-{k[:6]}" if seen[n] > 1 else n) for k, n in names.items()}


def runtime_options(spec: GridSpec, memory: MemoryPlan, resources: TrialResources):
    """How a trial trains (never what): the spec's `train` section and the memory plan."""
    gpu = resources.gpus_per_worker > 0
    return RuntimeOptions(
        checkpoint_every_steps=spec.train.checkpoint_every_steps,
        checkpoint_every_minutes=spec.train.checkpoint_every_minutes,
        log_every_steps=spec.train.log_every_steps,
        deterministic=spec.train.deterministic,
        compile=None if spec.train.compile == "auto" else spec.train.compile,
        micro_batch_size=memory.micro_batch,
        activation_checkpointing=memory.checkpointing,
        periodic_eval_cost=spec.eval.periodic_cost,
        device="cuda" if gpu and not spec.train.allow_cpu_fallback else None,
    )


def make_jobs(
    plan: GridPlan, tracking_uri: str, experiment_id: str, storage_path: str
) -> list[TrialJob]:
    """Check the plan can train here, then describe every trial as a TrialJob.

    Data paths become absolute (Ray workers run in other folders); the keys do not change, as
    present data is identified by content (slmscale.trial)."""
    from slmscale.grid.trunks import plan_trunks

    check_data_present(plan.data)
    spec, jobs = plan.spec, []
    names = run_names(plan.trials)
    label = units_dataset_label(plan.data)
    trunk_of = {
        b.key: trunk.key
        for trunk in plan_trunks(plan.trials, plan.data.available_tokens)
        for b in trunk.branches
    }
    for t in plan.trials:
        resources = trial_resources(spec, t)
        memory = memory_plan(spec, t, plan.data.n_units)
        jobs.append(
            TrialJob(
                trial=t.with_paths(lambda p: str(Path(p).resolve())),
                run_name=names[t.key],
                grid=spec.name,
                units_label=label,
                tracking_uri=tracking_uri,
                experiment_id=experiment_id,
                storage_path=storage_path,
                options=runtime_options(spec, memory, resources),
                resources=resources,
                trunk=trunk_of.get(t.key),
            )
        )
    return jobs
