"""The memory model against measured saved tensors, and what the planner does with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from slmscale.model import PAPER_SIZES, ModelShape, build_model
from slmscale.train.memory import (
    GIB,
    activation_bytes,
    choose_micro_batch,
    saved_tensor_bytes,
    training_memory,
)

N_UNITS = 500


def _zero_model(shape: ModelShape, context: int):
    """The trainer's model at full depth without paying for its random init (values are
    irrelevant to which tensors autograd saves)."""
    with torch.device("meta"):
        model = build_model(shape, N_UNITS, context)
    model.to_empty(device="cpu")
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            t.zero_()
    return model.train()


MICRO_BATCH, CONTEXT = 2, 64
IN_A_CHILD = {"309M", "823M"}  # 2-6 GB each on the CPU


def measured_bytes(name: str, bf16: bool) -> int:
    """Saved-tensor bytes of the full-depth `name` model on a (2, 64) batch."""
    model = _zero_model(PAPER_SIZES[name], CONTEXT)
    x = torch.randint(0, N_UNITS, (MICRO_BATCH, CONTEXT))
    return saved_tensor_bytes(model, x, bf16=bf16)


def _measured_in_a_child(name: str, bf16: bool) -> int:
    """`measured_bytes` in a fresh process: the CPU allocator keeps what a full-size model
    took after it is freed (seen: 16 GB held by this module's process for the rest of the
    suite), so the largest models are built where their memory goes back at exit."""
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"from {Path(__file__).stem} import measured_bytes; "
        f"print(measured_bytes({name!r}, {bf16}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return int(out.stdout.split()[-1])


@pytest.mark.parametrize("name", list(PAPER_SIZES))
@pytest.mark.parametrize("bf16", [True, False], ids=["bf16", "fp32"])
def test_activation_model_matches_saved_tensors_for_table1_sizes(name, bf16):
    shape = PAPER_SIZES[name]
    micro_batch, context = MICRO_BATCH, CONTEXT
    measure = _measured_in_a_child if name in IN_A_CHILD else measured_bytes
    measured = measure(name, bf16)
    predicted = activation_bytes(shape, N_UNITS, micro_batch, context, bf16=bf16)
    assert predicted == pytest.approx(measured, rel=0.02), (measured, predicted)


def test_per_token_slope_is_the_calibrated_per_layer_figure():
    """Two depths x two token counts isolate one layer's bytes per token: 34 d + 8 f + 4 h + 8."""
    base = PAPER_SIZES["85M"]
    got = {}
    for layers in (1, 2):
        for context in (32, 64):
            shape = ModelShape("probe", layers, base.dim, base.n_heads)
            model = _zero_model(shape, context)
            got[layers, context] = saved_tensor_bytes(
                model, torch.zeros(1, context, dtype=torch.long), bf16=True
            )
    per_layer = (got[2, 64] - got[1, 64]) - (got[2, 32] - got[1, 32])
    assert per_layer / 32 == 34 * 768 + 8 * 2048 + 4 * 12 + 8


def test_checkpointing_keeps_less_than_half():
    shape = PAPER_SIZES["309M"]
    full = activation_bytes(shape, N_UNITS, 8, 2050)
    ckpt = activation_bytes(shape, N_UNITS, 8, 2050, checkpointing=True)
    assert ckpt < 0.2 * full


def test_paper_micro_batches_fit_80gb():
    for name, shape in PAPER_SIZES.items():
        from slmscale.model import PAPER_BATCH_SIZES

        choice = choose_micro_batch(shape, N_UNITS, PAPER_BATCH_SIZES[name], 2050, 80)
        assert choice is not None and not choice.checkpointing, name
        assert choice.estimate.total <= 80 * GIB * 0.92
        # the next larger divisor would not have fitted: the choice is the largest
        bigger = training_memory(shape, N_UNITS, 2 * choice.micro_batch, 2050)
        assert choice.micro_batch == PAPER_BATCH_SIZES[name] or bigger.total > 80 * GIB * 0.92


def test_checkpointing_is_chosen_when_one_sequence_does_not_fit():
    shape = PAPER_SIZES["823M"]
    choice = choose_micro_batch(shape, N_UNITS, 512, 2050, 20)
    assert choice is not None and choice.checkpointing
    assert choose_micro_batch(shape, N_UNITS, 512, 2050, 8) is None  # weights + Adam alone: 12 GiB


def test_paper_dry_run_fits_every_trial_in_its_declared_memory():
    """`slmscale grid tune_spaces/paper.yaml --dry-run`: every trial has a micro-batch and a
    predicted peak within the memory declared for its workers (80 GB, or the GPU share)."""
    from pathlib import Path

    from slmscale.grid.dryrun import render_table, trial_rows
    from slmscale.grid.plan import load_plan

    repo = Path(__file__).resolve().parents[1]
    plan = load_plan(str(repo / "tune_spaces" / "paper.yaml"))
    rows = trial_rows(plan.spec, plan.data, plan.trials)
    assert len(rows) == 55
    for r in rows:
        assert r["micro_batch"] >= 1 and not r["activation_checkpointing"], r
        assert r["predicted_memory_gib"] <= r["device_memory_gb"] * 0.92, r
        assert r["device_memory_gb"] <= 80
    by_size = {r["model_size"]: (r["workers"], r["gpus_per_worker"]) for r in rows}
    assert by_size["823M"] == (8, 1.0) and by_size["20M"] == (1, 0.25)
    table = render_table(plan.spec, plan.data, plan.trials)
    assert "micro-batch" in table and "45.0/80" in table  # 823M: 8 sequences per micro-batch


def test_resources_precedence_size_over_block_over_grid():
    from slmscale.config.base import parse_model
    from slmscale.config.grid import GridSpec

    spec = parse_model(
        GridSpec,
        {
            "name": "r",
            "units": [{"path": "u"}],
            "models": ["20M", "85M"],
            "tokens": [1e6],
            "extra": [{"models": ["85M"], "tokens": [2e6], "resources": {"workers": 4}}],
            "resources": {
                "workers": 1,
                "gpus_per_worker": 1,
                "per_size": {"20M": {"gpus_per_worker": 0.25, "device_memory_gb": 19}},
            },
        },
        "r.yaml",
    )
    extra = spec.blocks()[1].resources
    assert spec.resources.for_trial("85M").workers == 1
    assert spec.resources.for_trial("85M", extra).workers == 4
    small = spec.resources.for_trial("20M", extra)
    assert (small.workers, small.gpus_per_worker, small.device_memory_gb) == (4, 0.25, 19)


def test_resources_for_an_unknown_size_is_one_line(tmp_path):
    from slmscale.config import load_grid_spec
    from slmscale.errors import UserError

    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\nunits: [{path: u}]\nmodels: [20M]\ntokens: [1.0e6]\n"
        "resources: {per_size: {tiny-typo: {workers: 2}}}\n"
    )
    with pytest.raises(UserError, match="per_size names sizes not in the grid: tiny-typo"):
        load_grid_spec(path)
