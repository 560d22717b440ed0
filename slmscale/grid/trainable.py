"""The Tune trainable of one Ray Train job (a trial, a WSD trunk, or a pack): public Ray only.

The pattern is Ray's own "Train inside Tune" for Train V2: a Tune *function* trainable builds a
`TorchTrainer` and calls `fit()` (`Tuner(TorchTrainer(...))` is refused in Ray 2.60).  How the
Train job's results reach Tune: a `ray.train.UserCallback` on the Train controller puts each
report on a `ray.util.queue.Queue`, and the trainable's own thread takes them off and calls
`tune.report` while `fit()` runs in a second thread.  Why not Ray's `TuneReportCallback`: it hands
results to Tune through Tune's one-slot result queue from Tune's main thread, which deadlocks
when the trainable returns while the last Train report is in flight (both threads block on the
full slot; seen in the demo under load).  With every report made by the trainable's thread, in
order, the final result of a trial comes after its Train reports, always.

Failures (slmscale.grid.trainworker): Ray counts them.  Once a job's retries are spent, the
trial it was training closes FAILED (KILLED when its processes were lost, e.g. Ctrl-C: a rerun
resumes it) and, in a pack, the others go on in a fresh job.  A WSD branch waits for its trunk's
branch point before it asks for workers; a trunk that fails releases its waiting branches.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace

from slmscale.config.grid import TrialResources
from slmscale.grid import trunkrun
from slmscale.grid.runner import TrialJob, finish, start_run
from slmscale.grid.trainworker import TrainUnit, last_line, progress, train_worker
from slmscale.grid.trunks import branch_step
from slmscale.tracking.schema import TAG_FAILURE
from slmscale.tracking.store import client
from slmscale.train.checkpoint import sweep_scratch

HEALTH_CHECK_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
HEALTH_CHECK_S = "0.25"  # Train V2 polls every 2 s by default: most of a small trial's overhead
POLL_S = 0.5  # how long the trainable waits for a Train report before checking on fit()
# A worker group that cannot be placed fails after this many seconds (Ray's default is 60: too
# short for a cloud node to boot), and is retried CONTROLLER_RETRIES times: about an hour, then
# the trial is FAILED instead of waiting forever on a placement that never comes.
START_TIMEOUT_ENV, START_TIMEOUT_S = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "600"
CONTROLLER_RETRIES = 6


_queue = None  # this process's report queue: Tune reuses the process for the next trial


def _report_queue():
    """The queue Train reports reach the trainable through, made once per trainable process
    (an actor start, ~1.3 s of CPU, saved on every later trial) and placed on this node, so that
    it lives exactly as long as the process that reads it."""
    global _queue
    if _queue is None:
        import ray
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        _queue = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})
    return _queue


def _forwarder(queue):
    """A Train callback putting each report's rank-0 metrics on `queue` (see module doc)."""
    import ray.train

    class ForwardReports(ray.train.UserCallback):
        def after_report(self, run_context, metrics, checkpoint) -> None:
            queue.put(dict(metrics[0]))

    return ForwardReports()


def _trainer(unit: TrainUnit, res: TrialResources, storage_path: str, queue):
    """A TorchTrainer running `train_worker` over `unit` as Train run `unit.name`."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    # One worker never communicates: gloo then works whether or not torch sees the GPU Ray
    # granted.  Several GPU workers need NCCL.
    backend = "nccl" if res.gpus_per_worker > 0 and res.workers > 1 else "gloo"
    return TorchTrainer(
        train_worker,
        train_loop_config={"unit": unit},
        torch_config=TorchConfig(backend=backend),
        scaling_config=ScalingConfig(
            num_workers=res.workers,
            use_gpu=res.gpus_per_worker > 0,
            resources_per_worker=res.per_worker(),
        ),
        run_config=RunConfig(
            name=unit.name,
            storage_path=storage_path,
            # Ray tells a node preemption (retried without limit) from other failures: an
            # exception, a lost worker process (retried up to max_failures); a worker group
            # that cannot be placed is a controller failure (retried CONTROLLER_RETRIES times).
            failure_config=FailureConfig(
                max_failures=res.max_failures,
                max_preemption_failures=-1,
                controller_failure_limit=CONTROLLER_RETRIES,
            ),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=[_forwarder(queue)],
        ),
    )


def _fit(trainer, queue, report) -> BaseException | None:
    """`trainer.fit()` in a thread while this thread passes each Train report to `report`;
    returns the error fit() raised, if any.  After fit() returns every report is queued."""
    from ray.util.queue import Empty

    outcome: dict = {}

    def target() -> None:
        try:
            trainer.fit()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="slmscale-train-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        try:
            report(queue.get(timeout=POLL_S))
        except Empty:
            pass
    thread.join()
    while not queue.empty():  # what the job reported last, after this thread's last look
        report(queue.get_nowait())
    return outcome.get("error")


def _settle(job: TrialJob, reason: str | None, lost: bool) -> dict:
    """The trial's final result for Tune, after its Train job ended; closes a run left open.

    The run is closed once, by its owner: rank 0 closes it when training ends there (FINISHED,
    or FAILED).  A run left RUNNING is closed here: KILLED when its processes were lost (a rerun
    resumes it), FAILED otherwise.  A trial of a pack the job never reached has no run: it is
    left for a rerun (KILLED in the table).
    """
    from slmscale.tracking.runs import canonical_order, find_trial_runs

    runs = find_trial_runs(job.tracking_uri, job.experiment_id, job.key, job.kind)
    if not runs:
        why = reason if (reason or "").startswith("not started") else f"not started: {reason}"
        return progress(job, "KILLED", reason=why if reason else "not started")
    ended = client(job.tracking_uri).get_run(min(runs, key=canonical_order).info.run_id)
    status = ended.info.status
    if status in ("FINISHED", "FAILED"):
        reason = ended.data.tags.get(TAG_FAILURE)
    else:
        status = "KILLED" if lost else "FAILED"
        reason = reason or "the training job ended without closing its run"
        finish(job, ended.info.run_id, status, reason)
    return progress(job, status, reason=reason or "", tokens_seen=job.tokens)


def tune_trial(config: dict) -> None:
    """The Tune function trainable: the unit's Train job, then each trial's final result.

    In a pack, a trial whose failures spent the job's retries is closed and the rest of the
    pack goes on in a fresh job (with fresh retries); lost processes (Ctrl-C, a dead node)
    stop the unit, leaving its unfinished trials to a rerun.
    """
    from ray import tune

    os.environ.setdefault(HEALTH_CHECK_ENV, HEALTH_CHECK_S)  # propagated to the Train controller
    os.environ.setdefault(START_TIMEOUT_ENV, START_TIMEOUT_S)
    unit: TrainUnit = config["unit"]["work"]
    try:
        _run_unit(unit, tune)
    except Exception as exc:  # noqa: BLE001 - our own bug or an unreachable store: say which
        # and never leave a run RUNNING behind a "Tune error"
        reason = f"the grid's trial driver failed: {last_line(exc)}"
        for job in unit.jobs:
            tune.report(_settle(job, reason, lost=False))


def _run_unit(unit: TrainUnit, tune) -> None:
    """tune_trial's body: the unit's Train job(s), then each trial's final result."""
    unit = replace(unit, started=time.time())
    first = unit.jobs[0]
    if not unit.packed and first.trunk and not first.is_trunk:
        # A WSD branch starts once its trunk has passed its branch step (holding no workers).
        failed = trunkrun.wait_for_branch_point(first, branch_step(first.trial))
        if failed is not None:
            tune.report(_settle(first, f"not started: its trunk failed ({failed})", lost=True))
            return
    if not unit.packed and not first.is_trunk:  # one trial: its run is opened before Train
        run = start_run(first)
        if run.status == "FINISHED":
            tune.report(progress(first, "SKIPPED", tokens_seen=first.tokens))
            return
        if first.trunk and not run.resumed:
            trunkrun.copy_trunk_curve(
                first,
                run.run_id,
                branch_step(first.trial) * first.trial.batch_size * first.trial.context,
            )
        unit = replace(unit, run_ids={first.key: run.run_id})
    global _queue
    queue = _report_queue()
    settled: dict[str, dict] = {}
    try:
        todo = unit
        while todo.jobs:
            trainer = _trainer(todo, todo.jobs[0].resources, todo.jobs[0].storage_path, queue)
            error = _fit(trainer, queue, tune.report)
            if error is None:
                break
            reason, lost = last_line(error), _lost_not_failed(error)
            culprit = _running(todo)
            if culprit is not None:
                settled[culprit.key] = _settle(culprit, reason, lost)
            if lost or culprit is None or not todo.packed:
                for job in todo.jobs:
                    settled.setdefault(job.key, _settle(job, reason, lost))
                break
            todo = replace(todo, jobs=tuple(j for j in todo.jobs if _unfinished(j, settled)))
    except BaseException:
        _queue = None  # it may be what failed: the next trial makes a fresh one
        raise
    for job in unit.jobs:
        sweep_scratch(job.key)  # scratch copies of this trial's killed workers on this node
        final = settled.get(job.key) or _settle(job, None, lost=False)
        if job.is_trunk and final["status"] in ("FAILED", "KILLED"):  # release its branches
            trunkrun.mark_failed(job.storage_path, job.trunk, final.get("reason") or "")
        tune.report(final)


def _running(unit: TrainUnit) -> TrialJob | None:
    """The trial of `unit` whose run is RUNNING: the one the failed job was training."""
    from slmscale.tracking.runs import trial_status

    for job in unit.jobs:
        if trial_status(job.tracking_uri, job.experiment_id, job.key, job.kind) == "RUNNING":
            return job
    return None


def _unfinished(job: TrialJob, settled: dict) -> bool:
    from slmscale.tracking.runs import trial_status

    if job.key in settled:
        return False
    status = trial_status(job.tracking_uri, job.experiment_id, job.key, job.kind)
    return status not in ("FINISHED", "FAILED")


def _lost_not_failed(exc: BaseException) -> bool:
    """Whether the Train job ended because its processes died (not because the code failed).

    An actor or worker that died under the job (SIGINT from Ctrl-C reaching the process group,
    the OOM killer, a lost node) leaves the trial resumable; an exception in the training code
    fails it.  Ray wraps worker failures in `ray.train.WorkerGroupError`: its per-rank errors
    tell the two apart.
    """
    import ray.exceptions as rex

    lost_types = (rex.RayActorError, rex.WorkerCrashedError, rex.NodeDiedError)
    stack, visited = [exc], set()
    while stack and len(visited) < 50:
        e = stack.pop()
        if id(e) in visited:
            continue
        visited.add(id(e))
        if isinstance(e, lost_types):
            return True
        # the chain, a WorkerGroupError's per-rank errors, a failed health check's cause
        inner = [e.__cause__, e.__context__, getattr(e, "health_check_failure", None)]
        inner += list(getattr(e, "worker_failures", {}).values())
        stack += [c for c in inner if c is not None]
    return False
