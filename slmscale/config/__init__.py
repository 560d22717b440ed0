"""Typed specs for everything a user writes (pydantic).  The only place YAML is parsed."""

from slmscale.config.base import StrictModel, load_yaml_model, read_yaml, validation_message
from slmscale.config.grid import (
    BenchmarkSpec,
    EvalSpec,
    GridBlock,
    GridSpec,
    OptimizerSpec,
    ResourcesSpec,
    ShapeSpec,
    ThroughputSpec,
    TrainSpec,
    UnitsSource,
    load_grid_spec,
)

__all__ = [
    "BenchmarkSpec",
    "EvalSpec",
    "GridBlock",
    "GridSpec",
    "OptimizerSpec",
    "ResourcesSpec",
    "ShapeSpec",
    "StrictModel",
    "ThroughputSpec",
    "TrainSpec",
    "UnitsSource",
    "load_grid_spec",
    "load_yaml_model",
    "read_yaml",
    "validation_message",
]
