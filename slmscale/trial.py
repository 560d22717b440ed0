"""One grid point, typed: what a trial *is*, made once by grid expansion, read by the training core.

Pure core (no Ray, no MLflow, no torch).  A `Trial` is a frozen dataclass: the grid
(slmscale.grid.expand) builds it from a spec, the Ray edge ships it to workers unchanged, and the
training core (slmscale.train, slmscale.corpus) reads nothing else about the trial.  Derived
numbers (steps, warmup, FLOPs, epochs) are properties computed by the core's own functions
(slmscale.train.schedule, slmscale.model), so they are written once.

Identity.  `Trial.key` hashes `identity()`: everything that changes what is trained.  A units
dataset present on disk is named by its content digest, not its path, so the same data reached
through another folder keeps the trial's key (DESIGN.md "Units dataset").  Resources, packing,
runtime options and where things are tracked are not part of a trial (moving a trial to another
machine does not make it another experiment).  The identity of an existing spec must never
change by accident: the default cosine schedule adds nothing to it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from typing import Literal

from slmscale.model import (
    ModelShape,
    flops_full,
    flops_per_token,
    non_embedding_params,
    total_params,
    training_flops,
    vocab_size,
)
from slmscale.train import schedule as lr_schedule


@dataclass(frozen=True)
class DataSource:
    """One units dataset of the training mixture."""

    path: str
    weight: float | None  # None on every source: proportional to each source's size
    in_test: bool  # whether its test split counts in the test loss
    datasets: tuple[str, ...] | None  # restrict to these dataset names (None: all)
    digest: str | None  # content digest when present on disk; None: planning only

    @classmethod
    def at(cls, path: str, weight: float | None = None, in_test: bool = True) -> DataSource:
        """A source named by its path only (benchmarks' helpers, tests): no content digest."""
        return cls(str(path), weight, in_test, None, None)

    @classmethod
    def from_dict(cls, d: dict) -> DataSource:
        """From a `{"path", "weight"?, "in_test"?, "datasets"?}` mapping (no content digest)."""
        datasets = d.get("datasets")
        return cls(
            str(d["path"]),
            d.get("weight"),
            bool(d.get("in_test", True)),
            tuple(datasets) if datasets is not None else None,
            d.get("digest"),
        )

    def identity(self) -> dict:
        # The old name `meta_hash` is kept in the identity so existing trial keys hold.
        return {
            "path": None if self.digest else self.path,
            "weight": self.weight,
            "in_test": self.in_test,
            "datasets": list(self.datasets) if self.datasets is not None else None,
            "meta_hash": self.digest,
        }


@dataclass(frozen=True)
class Optimizer:
    """AdamW and the warmup of the paper's recipe (section 3.1)."""

    lr_max: float = 5e-4
    lr_min: float = 5e-5
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    warmup_min_steps: int = 100
    warmup_fraction: float = 0.01


@dataclass(frozen=True)
class Schedule:
    """The learning-rate schedule (slmscale.train.schedule).

    cosine: the paper's, one run per budget.  wsd: warmup, constant LR, then a cooldown over the
    last `cooldown_fraction` of the steps (`1-sqrt` or `linear`), so that the runs of one model
    size share a constant-LR trunk and branch off it (docs/grid.md, "Schedules").  constant:
    warmup then constant LR, the trunk itself (slmscale.grid.trunks; never a grid point).
    """

    kind: Literal["cosine", "wsd", "constant"] = "cosine"
    cooldown_fraction: float = 0.2
    cooldown_shape: Literal["1-sqrt", "linear"] = "1-sqrt"
    warmup_steps: int | None = None  # WSD's (one for every run of a trunk); None: warmup_min_steps

    def identity(self) -> dict | None:
        if self.kind == "cosine":
            return None  # the default adds nothing: existing trial keys hold
        return asdict(self)


@dataclass(frozen=True)
class EvalPlan:
    """When the test loss is measured: every `interval_steps`, or `n_evals` times per run."""

    interval_steps: int | None = None
    n_evals: int = 20
    max_test_tokens: int | None = None  # cap on test tokens per evaluation (None: all)


@dataclass(frozen=True)
class Benchmark:
    """A downstream benchmark scored at the end of the trial."""

    name: str
    units: str  # its units dataset
    root: str  # the benchmark as distributed (gold files / pair layout)
    split: str = "dev"
    score: str | None = None  # "sum" | "mean"; None: the benchmark's reference default
    digest: str | None = None  # content digest of units + root when present; None: by path

    def identity(self) -> dict:
        if self.digest:
            return {
                "name": self.name,
                "split": self.split,
                "score": self.score,
                "digest": self.digest,
            }
        return {
            "name": self.name,
            "units": self.units,
            "root": self.root,
            "split": self.split,
            "score": self.score,
        }


@dataclass(frozen=True)
class Trial:
    """Everything that determines one training run (and nothing that does not)."""

    shape: ModelShape
    n_units: int  # K (or the unigram vocabulary): the model's vocabulary before specials
    tokens: int  # D: tokens trained on, exactly
    unique_tokens: int  # U_D: a prefix of the token store
    batch_size: int  # sequences per optimizer step (global)
    context: int
    seed: int
    tokenizer: str
    data: tuple[DataSource, ...]
    data_order: int  # the token store format: how U_D tokens are drawn from the data
    optimizer: Optimizer = Optimizer()
    schedule: Schedule = Schedule()
    eval: EvalPlan = EvalPlan()
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    benchmarks: tuple[Benchmark, ...] = ()
    # Where the trial came from in its spec (0: main grid; i + 1: extra[i]): for resources only.
    block: int = field(default=0, compare=False)

    # ---- identity ----------------------------------------------------------------------------

    def identity(self) -> dict:
        """What the key hashes (the layout of the resolved config of earlier releases)."""
        out = {
            "model": self.shape.to_dict(),
            "n_units": self.n_units,
            "tokens": self.tokens,
            "unique_tokens": self.unique_tokens,
            "batch_size": self.batch_size,
            "context": self.context,
            "seed": self.seed,
            "optimizer": asdict(self.optimizer),
            "eval": asdict(self.eval),
            "train": {"precision": self.precision},
            "tokenizer": self.tokenizer,
            "data": [s.identity() for s in self.data],
            "data_order": self.data_order,
            "benchmarks": [b.identity() for b in self.benchmarks],
        }
        schedule = self.schedule.identity()
        if schedule is not None:
            out["schedule"] = schedule
        return out

    @cached_property
    def key(self) -> str:
        """Stable 16-hex hash of the identity (canonical JSON)."""
        return _digest(self.identity())

    def to_dict(self) -> dict:
        """The resolved trial as plain data (logged with the run; paths included)."""
        out = {**self.identity(), "key": self.key, "schedule": asdict(self.schedule)}
        out["data"] = [asdict(s) for s in self.data]
        out["benchmarks"] = [asdict(b) for b in self.benchmarks]
        return out

    def with_paths(self, resolve) -> Trial:
        """The same trial with every data and benchmark path passed through `resolve` (e.g.
        made absolute for workers in other folders); the key does not change for present data."""
        data = tuple(replace(s, path=resolve(s.path)) for s in self.data)
        marks = tuple(
            replace(b, units=resolve(b.units), root=resolve(b.root)) for b in self.benchmarks
        )
        return replace(self, data=data, benchmarks=marks)

    # ---- derived numbers (one definition each, from the core) ---------------------------------

    @property
    def model_size(self) -> str:
        return self.shape.name

    @property
    def n_params(self) -> int:
        """N: non-embedding parameters (the laws' N)."""
        return non_embedding_params(self.shape)

    @property
    def n_params_total(self) -> int:
        return total_params(self.shape, vocab_size(self.n_units))

    @property
    def epochs(self) -> float:
        return self.tokens / self.unique_tokens

    @property
    def steps(self) -> int:
        return lr_schedule.steps_for(self.tokens, self.batch_size, self.context)

    @property
    def warmup_steps(self) -> int:
        return lr_schedule.warmup_steps(self.steps, self.optimizer, self.schedule)

    @property
    def flops(self) -> float:
        """C = 6 N D, what the laws are fitted against (the paper's definition)."""
        return training_flops(self.n_params, self.tokens)

    @property
    def flops_full(self) -> float:
        """6 N D plus the output layer and causal attention over the context (model.flops_full)."""
        return flops_full(self.shape, self.n_units, self.context, self.tokens)

    @property
    def flops_with_attention(self) -> float:
        """(6N + 12 L T d) D: the count MFU and GPU-hour estimates use (model.flops_per_token)."""
        return flops_per_token(self.shape, self.context) * self.tokens

    def lr_at(self, step: int) -> float:
        """The learning rate of optimizer step `step` (0-based)."""
        return lr_schedule.lr_at(
            step,
            steps=self.steps,
            warmup_steps=self.warmup_steps,
            lr_max=self.optimizer.lr_max,
            lr_min=self.optimizer.lr_min,
            schedule=self.schedule,
        )


def _digest(identity: dict) -> str:
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
