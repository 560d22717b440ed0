"""The same step timing through Ray Train (edge): the overhead ratio and the start-up cost.

Imported only by the bench's CPU train section, lazily: Ray is imported inside the functions, so
the GPU path (no Ray installed there) never reaches it.  `ray_train_throughput` runs
`slmscale.bench.steps.step_throughput` in a one-worker TorchTrainer: the worker's steady tokens/s
and the seconds from building the trainer to the end of the first step (Train V2's fixed
per-trial overhead plus model construction).  The worker writes its timing to a local file, so
the driver must share the worker's filesystem (a local Ray).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from slmscale.model import ModelShape


def _worker(config: dict) -> None:
    import ray.train

    from slmscale.bench.steps import step_throughput

    timing = step_throughput(ModelShape(**config["shape"]), **config["kwargs"])
    if ray.train.get_context().get_world_rank() == 0:
        Path(config["out"]).write_text(json.dumps(timing.to_dict()))
    ray.train.report({"tokens_per_sec": timing.tokens_per_sec})


def ray_train_throughput(shape: ModelShape, cpus: float = 1.0, **kwargs) -> dict:
    """{tokens_per_sec, seconds_to_first_step, ...} of the step run by a Ray Train worker."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from slmscale.grid.trainable import HEALTH_CHECK_ENV, HEALTH_CHECK_S

    os.environ.setdefault(HEALTH_CHECK_ENV, HEALTH_CHECK_S)
    scratch = Path(tempfile.mkdtemp(prefix="slmscale-bench-"))
    out = scratch / "timing.json"
    start = time.time()
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"shape": shape.to_dict(), "kwargs": kwargs, "out": str(out)},
        torch_config=TorchConfig(backend="gloo"),
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": cpus}),
        run_config=RunConfig(name="bench", storage_path=str(scratch / "ray_results")),
    )
    try:
        trainer.fit()  # Train V2's Result.metrics is empty without a checkpoint: read the file
        metrics = json.loads(out.read_text())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    metrics["seconds_to_first_step"] = metrics["first_step_done_at"] - start
    return metrics
