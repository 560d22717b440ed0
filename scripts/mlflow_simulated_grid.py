"""A grid's runs written into an MLflow store the way `slmscale grid` writes them, minus training.

    python scripts/mlflow_simulated_grid.py sqlite:////tmp/x/mlflow.db   # the demo's grid

Why: checking what the MLflow UI shows of a grid of over 100 trials (scripts/mlflow_screenshots.py)
should not need ten minutes of training.  The runs are made by the same functions a grid uses
(the parent run and its saved view, each trial's params, tags, dataset input, rounded tags and
end), with the trial list of tune_spaces/demo.yaml; only the numbers are simulated: test losses
from a Hoffmann/Muennighoff law with 1% noise, accuracies from a logistic in the loss with
binomial noise on 200 items (StoryCloze at chance).  The run names, keys and params are the
demo's own.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEMO_SPEC = ROOT / "tune_spaces" / "demo.yaml"
#: The demo's units hold ~1.08M training tokens; declared, so no units are needed to plan.
DEMO_UNITS = "units=[{path: units/demo, available_tokens: 1080000}]"
LAW = {"E": 1.3, "A": 8.0, "alpha": 0.3, "B": 40.0, "beta": 0.3, "R_D": 10.0}
ITEMS = 200


def simulated_loss(n_params: float, tokens: float, unique: float) -> float:
    """Eq. 4 at the effective data of Eq. 7 (repeated tokens are worth less)."""
    repeats = max(tokens / unique - 1.0, 0.0)
    d_eff = unique + unique * LAW["R_D"] * (1.0 - math.exp(-repeats / LAW["R_D"]))
    return LAW["E"] + LAW["A"] / n_params ** LAW["alpha"] + LAW["B"] / d_eff ** LAW["beta"]


def _accuracies(loss: float, rng) -> dict[str, float]:
    out = {}
    for metric, slope in (("sblimp_acc", 3.0), ("swuggy_acc", 4.0), ("topic_cloze_acc", 2.0)):
        p = 0.5 + 0.45 / (1.0 + math.exp(-slope * (2.9 - loss)))
        out[metric] = rng.binomial(ITEMS, p) / ITEMS
    out["story_cloze_acc"] = rng.binomial(ITEMS, 0.5) / ITEMS  # at chance, as in the demo
    return out


def _metrics(trial, rng) -> list:
    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    n, d, u = trial.n_params, trial.tokens, trial.unique_tokens
    final = simulated_loss(n, d, u) * (1.0 + 0.01 * rng.standard_normal())
    out = []
    for k in (1, 2, 3, 4):  # the eval points: test loss against tokens seen
        seen = int(d * k / 4)
        loss = final if k == 4 else simulated_loss(n, seen, min(u, seen))
        out += [Metric("test_loss", loss, ts, seen), Metric("train_loss", loss - 0.02, ts, seen)]
    out.append(Metric("test_loss_final", final, ts, d))
    for metric, acc in _accuracies(final, rng).items():
        out += [Metric(metric, acc, ts, d), Metric(f"{metric}_n_items", ITEMS, ts, d)]
    return out


def simulate_grid(tracking_uri: str, experiment: str = "demo", seed: int = 0) -> str:
    """Write the demo grid's parent and trial runs into the store; returns the parent run id."""
    import yaml

    from slmscale.grid.dryrun import trial_rows
    from slmscale.grid.plan import load_plan, run_names
    from slmscale.tracking.grid_run import (
        finish_grid_run,
        log_units_inputs,
        open_grid_run,
        trial_tags,
    )
    from slmscale.tracking.runs import finish_run, open_trial_run, trial_params
    from slmscale.tracking.schema import TAG_GRID
    from slmscale.tracking.store import client, get_or_create_experiment

    plan = load_plan(str(DEMO_SPEC), [DEMO_UNITS])
    exp = get_or_create_experiment(tracking_uri, experiment)
    parent = open_grid_run(
        tracking_uri,
        exp,
        plan.spec.name,
        spec_text=yaml.safe_dump(plan.spec.model_dump(mode="json"), sort_keys=False),
        overrides=[DEMO_UNITS],
        trial_rows=trial_rows(plan.spec, plan.data, plan.trials),
        description=plan.spec.description + " (simulated losses: scripts/mlflow_simulated_grid.py)",
    )
    rng = np.random.default_rng(seed)
    names = run_names(plan.trials)
    c = client(tracking_uri)
    for t in plan.trials:
        tags = {TAG_GRID: plan.spec.name, **trial_tags(parent)}
        params = trial_params(t, "units/demo@simulated")
        run = open_trial_run(tracking_uri, exp, t.key, names[t.key], params, tags)
        if run.status == "FINISHED":
            continue
        log_units_inputs(tracking_uri, run.run_id, [{"path": "units/demo", "digest": "simulated"}])
        c.log_batch(run.run_id, metrics=_metrics(t, rng))
        finish_run(tracking_uri, run.run_id)
    finish_grid_run(tracking_uri, parent, {"done": len(plan.trials)})
    return parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tracking_uri", help="e.g. sqlite:////tmp/x/mlflow.db (created if missing)")
    ap.add_argument("--experiment", default="demo", help="experiment name (default: demo)")
    args = ap.parse_args()
    print(f"grid parent run: {simulate_grid(args.tracking_uri, args.experiment)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
