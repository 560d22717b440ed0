"""The grid spec (tune_spaces/*.yaml): what a scaling study trains.

A spec is a product of model sizes x data budgets x epochs (the main grid) plus optional `extra`
blocks (e.g. the paper's multi-epoch runs), over a mixture of units datasets.  Defaults are the
paper's (section 3.1): AdamW, wd 0.1, LR 5e-4 -> 5e-5 cosine, warmup max(100, 1% of steps),
context 2050, batch sizes by size.

Over 400 lines on purpose: the one module that owns the grid spec's config models (DESIGN.md's
layering rule), each field with the comment that says what it does; split by section, a reader
would have to open several files to see what a spec can say.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from slmscale.config.base import StrictModel, load_yaml_model
from slmscale.model import PAPER_SIZES, ModelShape, budget_reference_params


class ShapeSpec(StrictModel):
    """A model size: a Table 1 name, or explicit layers/dim/heads under a label."""

    name: str
    layers: int | None = Field(default=None, gt=0)
    dim: int | None = Field(default=None, gt=0)
    heads: int | None = Field(default=None, gt=0)
    intermediate: int | None = Field(default=None, gt=0)
    kv_heads: int | None = Field(default=None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value):
        if isinstance(value, str):
            if value not in PAPER_SIZES:
                raise ValueError(f"unknown size {value!r} (known: {', '.join(PAPER_SIZES)})")
            return {"name": value}
        return value

    @model_validator(mode="after")
    def _complete(self):
        explicit = (self.layers, self.dim, self.heads)
        if all(v is None for v in explicit):
            if self.name not in PAPER_SIZES:
                raise ValueError(
                    f"unknown size {self.name!r} (known: {', '.join(PAPER_SIZES)}); "
                    "or give layers, dim and heads"
                )
            return self
        if any(v is None for v in explicit):
            raise ValueError(f"size {self.name!r}: give all of layers, dim and heads")
        if self.dim % self.heads:
            raise ValueError(
                f"size {self.name!r}: dim {self.dim} is not divisible by heads {self.heads}"
            )
        if self.kv_heads and self.heads % self.kv_heads:
            raise ValueError(
                f"size {self.name!r}: heads {self.heads} not divisible by kv_heads {self.kv_heads}"
            )
        return self

    def shape(self) -> ModelShape:
        if self.layers is None:
            return PAPER_SIZES[self.name]
        return ModelShape(
            self.name, self.layers, self.dim, self.heads, self.intermediate, self.kv_heads
        )


# ---- budgets and epochs, checked value by value so an error names its item (`tokens[1]`) -----
# Every float in a spec is finite (NaN and inf are refused); a budget is at least one token for
# every model it applies to, and epochs leave at least one unique token.


def _block_budgets(info: ValidationInfo) -> list[int]:
    """The block's budgets in tokens for every model (empty while models or budgets are invalid)."""
    models, tokens, ratios = (info.data.get(k) for k in ("models", "tokens", "d_over_n"))
    if tokens:
        return [int(round(t)) for t in tokens]
    if ratios and models:
        return [int(round(r * budget_reference_params(m.shape()))) for r in ratios for m in models]
    return []


def _tokens_value(value: float) -> float:
    if int(round(value)) < 1:
        raise ValueError(
            f"a budget of {value:g} tokens rounds to {int(round(value))}; give at least 1"
        )
    return value


def _d_over_n_value(value: float, info: ValidationInfo) -> float:
    for m in info.data.get("models") or []:
        tokens = int(round(value * budget_reference_params(m.shape())))
        if tokens < 1:
            raise ValueError(
                f"D/N = {value:g} gives model {m.name} a budget of {tokens} tokens; give at least 1"
            )
    return value


def _epochs_value(value):
    if value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"epochs must be a number >= 1 or 'auto', got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"epochs must be finite (a number >= 1 or 'auto'), got {value}")
    if value < 1:
        raise ValueError(f"epochs must be >= 1 or 'auto', got {value:g}")
    return float(value)


def _epochs_leave_unique_tokens(value, info: ValidationInfo):
    budgets = _block_budgets(info)
    if value != "auto" and budgets and int(round(min(budgets) / value)) < 1:
        raise ValueError(
            f"{value:g} epochs of a {min(budgets):,}-token budget leave 0 unique tokens; "
            "use fewer epochs or a larger budget"
        )
    return value


Budget = Annotated[float, Field(gt=0, allow_inf_nan=False)]
TokensBudget = Annotated[Budget, AfterValidator(_tokens_value)]
RatioBudget = Annotated[Budget, AfterValidator(_d_over_n_value)]
Epochs = Annotated[
    float | Literal["auto"],
    BeforeValidator(_epochs_value),
    AfterValidator(_epochs_leave_unique_tokens),
]


class WorkerResources(StrictModel):
    """Resources of the trials of one size (`resources.per_size`) or block (`extra[i].resources`);
    fields left out are the grid's (`resources`).  The global batch does not depend on them."""

    model_config = ConfigDict(allow_inf_nan=False)  # NaN and inf are never a setting

    workers: int | None = Field(default=None, ge=1)
    cpus_per_worker: float | None = Field(default=None, gt=0)
    gpus_per_worker: float | None = Field(default=None, ge=0)
    device_memory_gb: float | None = Field(default=None, gt=0)
    custom: dict[str, float] | None = None


RESOURCE_FIELDS = ("workers", "cpus_per_worker", "gpus_per_worker", "device_memory_gb", "custom")


class GridBlock(StrictModel):
    """models x budgets x epochs.  Budgets as D/N ratios or absolute tokens (exactly one).

    epochs: U_D = D / epochs.  `auto` uses all available data once and repeats it as needed
    (U_D = min(D, available)): the paper's main grid, where 155M at D/N = 128 makes 1.82 passes.
    A plain number larger than the data allows is an error, caught before anything trains.
    """

    model_config = ConfigDict(allow_inf_nan=False)  # NaN and inf are never a setting

    models: list[ShapeSpec] = Field(min_length=1)
    d_over_n: list[RatioBudget] | None = None
    tokens: list[TokensBudget] | None = None
    epochs: list[Epochs] = Field(default_factory=lambda: [1.0], min_length=1)
    # Repeat every point of this block with these seeds (each its own trial and run), to
    # measure run-to-run noise; None: the grid's `seed` only.
    seeds: list[int] | None = Field(default=None, min_length=1)
    resources: WorkerResources | None = None  # this block's trials (below resources.per_size)

    @model_validator(mode="after")
    def _one_budget_kind(self):
        if (self.d_over_n is None) == (self.tokens is None):
            raise ValueError("give exactly one of d_over_n and tokens")
        budgets = self.d_over_n or self.tokens
        if not budgets:
            raise ValueError("the budget list is empty")
        if any(b <= 0 for b in budgets):
            raise ValueError("budgets must be positive")
        return self


class UnitsSource(StrictModel):
    """One units dataset in the training mixture."""

    model_config = ConfigDict(allow_inf_nan=False)  # NaN and inf are never a setting

    path: str
    # Mixture weight.  None on every source (the default): proportional to each source's size
    # (the union of the corpora).  Given on every source: these proportions at every budget.
    weight: float | None = Field(default=None, gt=0)
    # Whether its test split counts in the test loss (the paper keeps sTinyStories out).
    in_test: bool = True
    # Training tokens it holds, for planning when the dataset is not present locally.
    available_tokens: float | None = Field(default=None, gt=0)
    # Restrict to these dataset names inside the units directory (default: all).
    datasets: list[str] | None = None


class OptimizerSpec(StrictModel):
    model_config = ConfigDict(allow_inf_nan=False)  # NaN and inf are never a setting

    lr_max: float = Field(default=5e-4, gt=0)
    lr_min: float = Field(default=5e-5, ge=0)
    weight_decay: float = Field(default=0.1, ge=0)
    beta1: float = Field(default=0.9, ge=0, lt=1)
    beta2: float = Field(default=0.95, ge=0, lt=1)
    eps: float = Field(default=1e-8, gt=0)
    grad_clip: float = Field(default=1.0, ge=0)
    warmup_min_steps: int = Field(default=100, ge=0)
    warmup_fraction: float = Field(default=0.01, ge=0, le=1)


class ScheduleSpec(StrictModel):
    """The learning-rate schedule: the paper's cosine (one run per budget), or warmup-stable-
    decay, where the runs of a model size branch off one constant-LR trunk and cool down over
    their last `cooldown_fraction` of steps (docs/grid.md "Schedules")."""

    model_config = ConfigDict(allow_inf_nan=False)  # NaN and inf are never a setting

    kind: Literal["cosine", "wsd"] = "cosine"
    cooldown_fraction: float = Field(default=0.2, gt=0, le=1)
    cooldown_shape: Literal["1-sqrt", "linear"] = "1-sqrt"
    # WSD's warmup, one for every run (a trunk is shared by runs of every length, so it cannot
    # be a share of each run's steps as cosine's is); unset: optimizer.warmup_min_steps.
    warmup_steps: int | None = Field(default=None, ge=0)


class EvalSpec(StrictModel):
    """When the test loss is measured: every `interval_steps`, or `n_evals` times per run."""

    interval_steps: int | None = Field(default=None, gt=0)
    n_evals: int = Field(default=20, gt=0)
    # Cap on test tokens scored per evaluation (None: the whole test split).
    max_test_tokens: int | None = Field(default=None, gt=0)
    # Share of the trial's training FLOPs that all periodic evaluations together may cost: they
    # score a fixed sample of the test split sized to it; the final test loss scores the whole
    # split.  Not part of the trial's identity (it changes no trained weight).
    periodic_cost: float = Field(default=0.02, gt=0, le=1, allow_inf_nan=False)


class BenchmarkSpec(StrictModel):
    """A downstream benchmark: its tokenized audio and its distributed directory (gold/layout)."""

    name: Literal["sblimp", "swuggy", "topic_cloze", "story_cloze"]
    units: str  # units dataset made by `slmscale tokenize` with the training data's encoder
    root: str  # the benchmark as distributed (gold.csv / pair layout)
    split: str = "dev"
    score: Literal["sum", "mean"] | None = None  # None: the benchmark's reference default


class TrialResources(StrictModel):
    """One trial's resolved Ray resources (what its Train job asks for); frozen and hashable."""

    model_config = ConfigDict(frozen=True)

    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    device_memory_gb: float | None = None
    max_failures: int = 2
    custom: dict[str, float] = Field(default_factory=dict)

    def per_worker(self) -> dict[str, float]:
        """The Ray resources one Train worker asks for (CPU, GPU when any, custom)."""
        out = {"CPU": float(self.cpus_per_worker), **self.custom}
        if self.gpus_per_worker > 0:
            out["GPU"] = float(self.gpus_per_worker)
        return out

    def group(self) -> str:
        """Trials with equal resources may share a Train job (slmscale.grid.packs)."""
        return self.model_dump_json()


class ResourcesSpec(StrictModel):
    """Ray resources per trial.  Precedence: `per_size` > the block's `resources` > these."""

    model_config = ConfigDict(allow_inf_nan=False)  # NaN and inf are never a setting

    workers: int = Field(default=1, ge=1)
    cpus_per_worker: float = Field(default=1.0, gt=0)
    gpus_per_worker: float = Field(default=0.0, ge=0)
    # Accelerator memory per worker (GiB); a model that cannot fit is refused before training.
    device_memory_gb: float | None = Field(default=None, gt=0)
    max_concurrent_trials: int | None = Field(default=None, ge=1)
    max_failures: int = Field(default=2, ge=0)
    # Custom Ray resources each worker needs, e.g. {"gpu_node": 1} to pin trials to a node type.
    custom: dict[str, float] = Field(default_factory=dict)
    # By size name, e.g. {823M: {workers: 8}, 20M: {gpus_per_worker: 0.25}}.
    per_size: dict[str, WorkerResources] = Field(default_factory=dict)
    # Grid points trained one after another by one Ray Train job (one worker group, its
    # processes and imports kept warm), for trials so small that starting Ray Train, a worker
    # process and torch/transformers/MLflow (~10 s) would be most of their time.  Each keeps its
    # own MLflow run, key and failure ledger; only trials with the same resources share a job
    # (slmscale.grid.packs).  1: every grid point is its own Train job.
    trials_per_job: int = Field(default=1, ge=1)

    def for_trial(self, size: str, block: WorkerResources | None = None) -> TrialResources:
        """The resolved resources of one trial: `per_size` > its block's > these."""
        out = self.model_dump(include=set(TrialResources.model_fields))
        for layer in (block, self.per_size.get(size)):
            if layer is not None:
                out.update({k: v for k in RESOURCE_FIELDS if (v := getattr(layer, k)) is not None})
        return TrialResources(**out)


class TrainSpec(StrictModel):
    model_config = ConfigDict(allow_inf_nan=False)  # NaN and inf are never a setting

    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    # A trial that asks for GPUs fails at once when torch on its worker sees none; true lets it
    # train on the CPU instead (every run records its device either way).
    allow_cpu_fallback: bool = False
    compile: bool | Literal["auto"] = "auto"  # auto: torch.compile on CUDA, eager on CPU
    # Checkpoint every this many optimizer steps; unset: every `checkpoint_every_minutes` of
    # wall-clock time (a preempted trial loses at most that much).
    checkpoint_every_steps: int | None = Field(default=None, gt=0)
    checkpoint_every_minutes: float = Field(default=20.0, gt=0)
    deterministic: bool = False
    log_every_steps: int = Field(default=10, gt=0)
    # Sequences per forward pass on one worker (gradient accumulation up to the batch); None:
    # the whole per-worker batch, or the largest that fits resources.device_memory_gb.
    micro_batch_size: int | None = Field(default=None, gt=0)
    # Recompute each layer's activations in backward (about a third more compute, a fraction of
    # the memory).  auto: only when one sequence does not fit the declared memory, or after an
    # out-of-memory error at micro-batch 1.
    activation_checkpointing: bool | Literal["auto"] = "auto"


class ThroughputSpec(StrictModel):
    """An assumption for planning: GPU-hours = FLOPs / (mfu x peak_flops)."""

    model_config = ConfigDict(allow_inf_nan=False)  # NaN and inf are never a setting

    mfu: float = Field(gt=0, le=1)
    peak_flops: float = Field(gt=0)  # per GPU, FLOP/s (H100 bf16 dense: 989e12)
    gpu: str | None = None


class GridSpec(StrictModel):
    model_config = ConfigDict(allow_inf_nan=False)  # NaN and inf are never a setting

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    units: list[UnitsSource] = Field(min_length=1)

    @field_validator("units")
    @classmethod
    def _weights_all_or_none(cls, value):
        given = [u.weight is not None for u in value]
        if any(given) and not all(given):
            i = given.index(False)
            raise ValueError(
                f"units[{i}] has no weight: give a weight to every source or to none "
                "(none: proportional to each source's size)"
            )
        return value

    # Training tokens available in all of `units`, for planning when the data is not present.
    available_tokens: float | None = Field(default=None, gt=0)
    # Units vocabulary (K, or the unigram vocab) for planning when the data is not present.
    n_units: int = Field(default=500, gt=0)
    tokenizer: str | None = None  # label, e.g. hubert25hz-k500; default from the units meta

    models: list[ShapeSpec] = Field(min_length=1)
    d_over_n: list[RatioBudget] | None = None
    tokens: list[TokensBudget] | None = None
    epochs: list[Epochs] = Field(default_factory=lambda: [1.0], min_length=1)
    seeds: list[int] | None = Field(default=None, min_length=1)  # the main grid's (see GridBlock)
    extra: list[GridBlock] = Field(default_factory=list)

    batch_size: dict[str, int] | int | None = None  # by size name, or one for all
    context: int = Field(default=2050, gt=1)
    seed: int = 0
    optimizer: OptimizerSpec = OptimizerSpec()
    schedule: ScheduleSpec = ScheduleSpec()
    eval: EvalSpec = EvalSpec()
    train: TrainSpec = TrainSpec()
    benchmarks: list[BenchmarkSpec] = Field(default_factory=list)
    resources: ResourcesSpec = ResourcesSpec()
    throughput: ThroughputSpec | None = None

    @model_validator(mode="after")
    def _check(self):
        self.blocks()  # the main grid validates as a block
        names = [m.name for b in self.blocks() for m in b.models]
        shapes: dict[str, ModelShape] = {}
        for block in self.blocks():
            for m in block.models:
                if m.name in shapes and shapes[m.name] != m.shape():
                    raise ValueError(f"size name {m.name!r} is used for two different shapes")
                shapes[m.name] = m.shape()
        if isinstance(self.batch_size, dict):
            unknown = sorted(set(self.batch_size) - set(names))
            if unknown:
                raise ValueError(f"batch_size names sizes not in the grid: {', '.join(unknown)}")
            if any(v <= 0 for v in self.batch_size.values()):
                raise ValueError("batch sizes must be positive")
        elif isinstance(self.batch_size, int) and self.batch_size <= 0:
            raise ValueError("batch_size must be positive")
        if self.optimizer.lr_min > self.optimizer.lr_max:
            raise ValueError("optimizer.lr_min is larger than optimizer.lr_max")
        # A Table 1 size absent from this grid (e.g. after a models=... override) is no typo.
        unknown = sorted(set(self.resources.per_size) - set(names) - set(PAPER_SIZES))
        if unknown:
            names_ = ", ".join(unknown)
            raise ValueError(f"resources.per_size names sizes not in the grid: {names_}")
        return self

    def blocks(self) -> list[GridBlock]:
        main = GridBlock(
            models=self.models,
            d_over_n=self.d_over_n,
            tokens=self.tokens,
            epochs=self.epochs,
            seeds=self.seeds,
        )
        return [main, *self.extra]


def load_grid_spec(path, overrides: Sequence[str] = ()) -> GridSpec:
    """Load and validate a grid spec (with `key=value` overrides); any problem is one line."""
    return load_yaml_model(GridSpec, path, overrides)
