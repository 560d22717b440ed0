"""Ray Tune over Ray Train: one Tune function trial per grid point, each a TorchTrainer job.

Ray 2.60 runs Train V2, where `Tuner(TorchTrainer(...))` is refused; the supported pattern (see
the project's platform notes) is a Tune *function* that builds a TorchTrainer and calls `fit()`.

Identity and resume:
- The project owns the MLflow run (slmscale.grid.runner.start_run): trial key -> one run,
  resumed by run id.  FINISHED trials are skipped before Tune starts, and counted.
- The Train RunConfig name is `trial-<key>` under a stable storage path, so Train resumes from its
  own latest checkpoint after a worker crash (FailureConfig) or a rerun of the whole grid.
- A non-finite loss ends its trial FAILED (tag slmscale.failure_reason); the Tune trial itself
  completes, so the others go on.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

from slmscale.config.grid import ResourcesSpec
from slmscale.grid.packs import make_packs, pack_name
from slmscale.grid.runner import TrialJob, finish, start_run
from slmscale.grid.table import TrialTable, tune_callback
from slmscale.grid.trainworker import clear_code_failures, last_line, train_worker
from slmscale.tracking.schema import TAG_FAILURE
from slmscale.tracking.store import client
from slmscale.train.checkpoint import sweep_scratch

HEALTH_CHECK_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
HEALTH_CHECK_S = "0.25"  # Train V2 polls every 2 s by default: most of a small trial's overhead


def _trainer(name: str, loop_config: dict, res: dict, storage_path: str):
    """A TorchTrainer running `train_worker(loop_config)` as Train run `name`."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    gpus = float(res["gpus_per_worker"])
    per_worker = _per_worker(res)
    # One worker never communicates: gloo then works whether or not torch sees the GPU Ray
    # granted (the core falls back to CPU).  Several GPU workers need NCCL.
    backend = "nccl" if gpus > 0 and res["workers"] > 1 else "gloo"
    return TorchTrainer(
        train_worker,
        train_loop_config={**loop_config, "max_failures": res["max_failures"]},
        torch_config=TorchConfig(backend=backend),
        scaling_config=ScalingConfig(
            num_workers=res["workers"], use_gpu=gpus > 0, resources_per_worker=per_worker
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            # Lost workers (preemption, node failure) are retried without limit; code failures
            # are counted against max_failures by the worker itself (grid.trainworker).
            failure_config=FailureConfig(max_failures=-1, max_preemption_failures=-1),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=[TuneReportCallback()],
        ),
    )


def _per_worker(res: dict) -> dict[str, float]:
    """The Ray resources one Train worker of a trial with resources `res` asks for."""
    per_worker = {"CPU": float(res["cpus_per_worker"]), **res.get("custom", {})}
    if float(res["gpus_per_worker"]) > 0:
        per_worker["GPU"] = float(res["gpus_per_worker"])
    return per_worker


def _settle(job: TrialJob, run_id: str | None, reason: str | None, lost: bool) -> dict:
    """The trial's final result for Tune, after its Train job ended; closes a run left open.

    The run is closed once, by its owner: rank 0 closes it (FINISHED, or FAILED on a
    non-finite loss or after max_failures code failures); only a job that ended without
    closing it is closed here: KILLED when its processes were lost (Ctrl-C reaching the Ray
    workers, a node gone: a rerun resumes it), FAILED otherwise.  A trial of a pack that the
    job never reached has no run: it is left for a rerun (KILLED in the table).
    """
    from slmscale.tracking.runs import canonical_order, find_trial_runs

    if run_id is None:
        runs = find_trial_runs(job.tracking_uri, job.experiment_id, job.key)
        if not runs:
            why = f"not started: {reason}" if reason else "not started"
            return {"trial_key": job.key, "status": "KILLED", "reason": why, "tokens_seen": 0}
        run_id = min(runs, key=canonical_order).info.run_id
    ended = client(job.tracking_uri).get_run(run_id)
    status = ended.info.status
    if status in ("FINISHED", "FAILED"):
        reason = ended.data.tags.get(TAG_FAILURE)
    else:
        status = "KILLED" if lost else "FAILED"
        reason = reason or "the training job ended without closing its run"
        finish(job, run_id, status, reason)
    return {
        "trial_key": job.key,
        "status": status,
        "reason": reason or "",
        "tokens_seen": job.tokens,
    }


def tune_trial(config: dict) -> None:
    """The Tune function trainable: one Train job for one trial, or for a pack of trials."""
    from ray import tune

    os.environ.setdefault(HEALTH_CHECK_ENV, HEALTH_CHECK_S)  # propagated to the Train controller
    unit, resources = config["unit"], config["resources"]
    jobs = [TrialJob.from_dict(d) for d in unit["jobs"]]
    res = jobs[0].resources or resources
    run_id = None
    loop_config: dict = {"name": unit["name"], "started": time.time(), "jobs": unit["jobs"]}
    if not unit["packed"]:  # one trial: its run is opened here, before Ray Train starts
        job = jobs[0]
        run = start_run(job)
        if run.status == "FINISHED":
            tune.report({"trial_key": job.key, "status": "SKIPPED", "tokens_seen": job.tokens})
            return
        run_id, loop_config = run.run_id, {"job": job.to_dict(), "run_id": run.run_id}
    reason, lost = None, False
    try:
        for job in jobs:
            clear_code_failures(job)
        _trainer(unit["name"], loop_config, res, jobs[0].storage_path).fit()
    except Exception as exc:  # retries exhausted (FailureConfig): the runs record why
        reason, lost = last_line(exc), _lost_not_failed(exc)
    for job in jobs:
        sweep_scratch(job.key)  # scratch copies of this trial's killed workers on this node
        report_final(_settle(job, run_id, reason, lost))
    wait_until_tune_has_every_result()


def units_of_work(todo: list[TrialJob], resources: ResourcesSpec) -> list[dict]:
    """What Tune schedules: one unit per trial, or packs of `resources.trials_per_job`."""
    if resources.trials_per_job <= 1:
        return [{"name": f"trial-{j.key}", "packed": False, "jobs": [j.to_dict()]} for j in todo]
    packs = make_packs(
        todo,
        resources.trials_per_job,
        key=lambda j: j.key,
        work=_steps,
        resources=lambda j: j.resources,
    )
    return [
        {"name": pack_name([j.key for j in p]), "packed": True, "jobs": [j.to_dict() for j in p]}
        for p in packs
    ]


def trials_that_fit(jobs: list[TrialJob], resources: ResourcesSpec, total: dict) -> int:
    """How many of `jobs` a fixed set of resources (`total`, a local Ray) trains at once.

    Without a limit Tune starts every trial at once (each holds only 0.01 CPU), and the Train
    controllers of those that cannot get their workers wait, each a process importing Ray
    Train on the same cores as the trials that train (the smoke grid's 5 trials on 2 cores).
    Not used on a cluster that may scale: there the waiting trials are its demand signal.
    """
    fits = []
    for job in jobs:
        res = job.resources or resources.model_dump()
        need = {k: int(res["workers"]) * float(v) for k, v in _per_worker(res).items()}
        need["CPU"] += 0.01  # the Tune trial's own share
        fits.append(min(int(total.get(k, 0.0) // v) for k, v in need.items() if v > 0))
    return max(1, max(fits, default=1))


def _work(job: TrialJob) -> float:
    return 6.0 * float(job.params["n_params"]) * job.tokens


def _steps(job: TrialJob) -> float:
    """Optimizer steps: what a small trial's time goes with (not its FLOPs; grid.packs)."""
    return job.tokens / (int(job.config["batch_size"]) * int(job.config["context"]))


def _lost_not_failed(exc: BaseException) -> bool:
    """Whether the Train job ended because its processes died (not because the code failed).

    Code failures are the worker's to judge (it records them and closes the run FAILED after
    `max_failures`); an actor or worker that died under the job (SIGINT from Ctrl-C reaching the
    process group, the OOM killer, a lost node) leaves the trial resumable.
    """
    import ray.exceptions as rex

    lost_types = (rex.RayActorError, rex.WorkerCrashedError, rex.NodeDiedError)
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, lost_types) or type(exc).__name__ in ("ActorDiedError",):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def wait_until_tune_has_every_result(timeout_s: float = 60.0, settle_s: float = 0.3) -> None:
    """Return only once Tune's main thread has taken every queued result (issue 18).

    When this function returns, Tune's session puts one more result (the end of the function)
    on its one-slot result queue from this thread.  If its main thread is at that moment
    re-reporting an item of TuneReportCallback's queue (the final result above), both puts
    meet on the full queue and the trial never ends (seen with py-spy on the first trial of a
    fresh session, twice: `_TrainSession._get_result_from_queues` -> `report` -> `Queue.put`).
    So wait until both queues are empty, twice `settle_s` apart (an item taken off the Ray
    queue is on the result queue well within that).
    """
    import time

    from ray.train._internal.session import get_session

    session = get_session()
    if session is None:
        return

    def drained() -> bool:
        actor_queue = getattr(session, "_inter_actor_queue", None)
        return (actor_queue is None or actor_queue.empty()) and session.result_queue.empty()

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if drained():
            time.sleep(settle_s)
            if drained():
                return
        time.sleep(0.05)


def report_final(metrics: dict) -> None:
    """The trial's last result, sent down the same channel as the Train job's own reports.

    Why not `tune.report`: Train's reports reach Tune through TuneReportCallback's queue, which
    Tune's session drains by re-reporting each item from its own thread.  A report of the Train
    job still in that queue when `fit()` returns, raced by a direct `tune.report` here, left both
    threads blocked on Tune's one-slot result queue: a trial that never ended (seen in the demo
    under load).  Put behind the Train job's reports, the final result arrives after them, always.
    """
    from ray.tune.integration.ray_train import TuneReportCallback

    TuneReportCallback().after_report(run_context=None, metrics=[metrics], checkpoint=None)


@dataclass
class GridSummary:
    skipped: int
    table: TrialTable

    @property
    def failed(self) -> int:
        return self.table.failed

    def render(self) -> str:
        return f"{self.table.summary()}; skipped {self.skipped} already FINISHED"


def _finished(job: TrialJob) -> bool:
    from slmscale.tracking.runs import find_trial_runs

    runs = find_trial_runs(job.tracking_uri, job.experiment_id, job.key)
    return any(r.info.status == "FINISHED" for r in runs)


def check_cluster_reach(jobs: list[TrialJob], stream=None) -> None:
    """On a cluster, refuse tracking/storage/units that only this machine can reach.

    With nodes on several machines that is an error (runs and checkpoints would be split or
    lost); with one machine so far (an autoscaling cluster before it scales up) it is a warning.
    """
    import ray

    from slmscale.cluster import node_local_problems, spans_machines
    from slmscale.errors import UserError

    job = jobs[0]
    units = [src["path"] for src in job.config["data"]]
    problems = node_local_problems(job.tracking_uri, job.storage_path, units)
    if not problems:
        return
    node_ips = [n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")]
    if spans_machines(node_ips, ray.util.get_node_ip_address()):
        raise UserError("cluster: " + "; ".join(problems))
    for p in problems:
        print(
            f"warning: {p}; fine on one machine, not once the cluster scales out",
            file=stream or sys.stderr,
        )


def run_grid(
    jobs: list[TrialJob],
    resources: ResourcesSpec,
    *,
    grid_name: str,
    max_concurrent: int | None = None,
    stream=None,
    stopper=None,
) -> GridSummary:
    """Train every job not yet FINISHED on the connected (or a new local) Ray cluster.

    `stopper`: a Tune Stopper that can end the whole run early (slmscale.grid.driver, Ctrl-C).
    """
    import ray
    from ray import tune

    todo = [j for j in jobs if not _finished(j)]
    print(
        f"grid {grid_name}: {len(jobs)} trials, skipping {len(jobs) - len(todo)} already FINISHED",
        file=stream or sys.stderr,
    )
    table = TrialTable(stream=stream, title=f"grid {grid_name}")
    for j in todo:
        table.add(j.key, j.run_name, j.tokens, work=_work(j))
    if not todo:
        return GridSummary(len(jobs), table)
    started = not ray.is_initialized()
    joining_cluster = bool(os.environ.get("RAY_ADDRESS"))  # e.g. under `ray job submit`
    if started:
        # A local Ray keeps trial chatter out of the live table; on a cluster the trial logs
        # must reach `ray job logs`.
        from slmscale.console import ray_logging_level

        ray.init(
            include_dashboard=False,
            log_to_driver=joining_cluster,
            logging_level=ray_logging_level(),
        )
    try:
        if joining_cluster or not started:
            check_cluster_reach(todo, stream)
        limit = max_concurrent or resources.max_concurrent_trials
        if limit is None and started and not joining_cluster:
            # A local Ray started here: its resources are all there will be.
            limit = trials_that_fit(todo, resources, ray.cluster_resources())
        tuner = tune.Tuner(
            tune.with_resources(tune_trial, {"CPU": 0.01}),
            param_space={
                "unit": tune.grid_search(units_of_work(todo, resources)),
                "resources": resources.model_dump(),
            },
            tune_config=tune.TuneConfig(
                max_concurrent_trials=limit,
                trial_name_creator=lambda t: t.config["unit"]["name"],
                trial_dirname_creator=lambda t: t.config["unit"]["name"],
            ),
            run_config=tune.RunConfig(
                name=f"grid-{grid_name}",
                storage_path=todo[0].storage_path,
                callbacks=[tune_callback(table)],
                stop=stopper,
                verbose=0,
            ),
        )
        tuner.fit()
    finally:
        if started:
            ray.shutdown()
    table.draw(force=True)
    return GridSummary(len(jobs) - len(todo), table)
