"""train: one study's budgets as cosine runs vs one WSD trunk with cooldown branches.

In process, on the CPU, one tiny model at four budgets (2x apart, a scaling study's shape): the
cosine side trains every budget from scratch; the WSD side trains the constant-LR trunk to its
last branch step, saving its state at every branch step, and each budget's cooldown from the
trunk's state (slmscale.grid.trunks, as `slmscale grid` runs them, less Ray).  The row is the
wall-time ratio; beside it the FLOPs ratio (slmscale.grid.trunks.schedule_cost) and how far the
final test losses differ.  The study-scale comparison (the demo grid, both schedules, with seed
noise and the Eq. 4 fits) is `slmscale demo --compare-schedules` (reports/demo/schedules.json).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from slmscale.bench.context import Context, tiny_grid
from slmscale.bench.results import Figure, judge

SECTION = "train"
BUDGETS = [16_384, 32_768, 65_536, 131_072]  # tokens: 32..256 steps of 8 x 64


def schedules_row(ctx: Context) -> Figure:
    from slmscale.grid.trunks import branch_step, plan_trunks, schedule_cost
    from slmscale.train import RuntimeOptions, train_one_trial
    from slmscale.train import checkpoint as ckpt
    from slmscale.train.synthetic import write_synthetic_units
    from slmscale.trial import Schedule

    ctx.step("train: a study's budgets, cosine runs vs a WSD trunk with branches")
    opts = RuntimeOptions(device="cpu")
    with tempfile.TemporaryDirectory(prefix="slmscale-bench-wsd-") as tmp:
        units = write_synthetic_units(Path(tmp) / "units", n_train=5000, n_test=200)
        wsd_trials, data = tiny_grid(
            units,
            "bench-schedules",
            {"name": "tiny", "layers": 2, "dim": 48, "heads": 2},
            BUDGETS,
            optimizer={"warmup_min_steps": 8},
            eval={"n_evals": 4},
            schedule={"kind": "wsd"},
        )
        available = data.available_tokens
        (trunk,) = plan_trunks(wsd_trials, available)

        start = time.perf_counter()
        cosine = [
            train_one_trial(replace(t, schedule=Schedule()), options=opts) for t in wsd_trials
        ]
        cosine_s = time.perf_counter() - start

        start = time.perf_counter()
        train_one_trial(
            trunk.trial,
            checkpoint_dir=Path(tmp) / "trunk",
            checkpoint_steps=trunk.branch_steps(),
            keep_checkpoints=None,
            options=opts,
        )
        saved = {
            ckpt.read_state(p)["progress"]["step"]: p for p in ckpt.candidates(Path(tmp) / "trunk")
        }
        wsd = [
            train_one_trial(t, resume_from=[saved[branch_step(t)]], options=opts)
            for t in wsd_trials
        ]
        wsd_s = time.perf_counter() - start
    cost = schedule_cost(wsd_trials, available)
    diffs = [
        abs(w.test_loss_final - c.test_loss_final) / c.test_loss_final
        for w, c in zip(wsd, cosine, strict=True)
    ]
    fig = Figure(
        SECTION,
        "WSD trunk + cooldown branches, wall s (tiny, 4 budgets 2x apart, CPU)",
        wsd_s,
        "s",
        cosine_s,
        "a cosine run per budget",
        extra={
            "budgets": BUDGETS,
            "flops_wsd": cost.wsd,
            "flops_cosine": cost.cosine,
            "loss_wsd": [w.test_loss_final for w in wsd],
            "loss_cosine": [c.test_loss_final for c in cosine],
            "trunk_steps": trunk.steps,
            "branch_steps": trunk.branch_steps(),
        },
    )
    fig.ratio = wsd_s / cosine_s
    judge(fig, "ratio", "<=", 0.75)
    fig.add_note(
        f"FLOPs {cost.wsd / cost.cosine:.2f}x cosine's (20% 1-sqrt cooldowns); final test "
        f"loss WSD vs cosine: median {100 * statistics.median(diffs):.1f}%, max "
        f"{100 * max(diffs):.1f}% apart (tiny runs; the demo measures it at study scale)"
    )
    return fig
