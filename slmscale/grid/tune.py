"""`slmscale grid` on Ray: a Tune run over the grid's units of work (edge).

`run_grid` starts (or joins) Ray, skips FINISHED trials, hands Tune one trainable per unit of
work (slmscale.grid.units; the trainable is slmscale.grid.trainable) and feeds the live table
from their results.  On a cluster it also watches why trials wait and which nodes cannot reach
the store (slmscale.grid.clusterwatch).

Identity and resume: the project owns the MLflow run (slmscale.grid.runner.start_run): trial
key -> one run, resumed by run id; each Train run is named after its trial, trunk or pack under
a stable storage path, so Train resumes from its own checkpoints after a worker crash or a rerun.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass

from slmscale.config.grid import ResourcesSpec
from slmscale.grid import trunkrun
from slmscale.grid.runner import TrialJob, finish
from slmscale.grid.table import TrialTable, tune_callback
from slmscale.grid.trainable import tune_trial
from slmscale.grid.units import _tune_config, trials_that_fit, units_of_work

PREEMPTION_WATCHER_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"  # read by Train's controller


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
    units = [src.path for src in job.trial.data]
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
    if not todo:
        return GridSummary(len(jobs), table)
    units = units_of_work(todo, resources)
    for unit in units:
        for j in unit.jobs:
            table.add(j.key, j.run_name, j.tokens, work=j.trial.flops)
            if j.is_trunk:  # a new try: waiting branches must not see the last one's failure
                trunkrun.clear_failed(j.storage_path, j.trunk)
    started = not ray.is_initialized()
    joining_cluster = bool(os.environ.get("RAY_ADDRESS"))  # e.g. under `ray job submit`
    if started:
        # A local Ray keeps trial chatter out of the live table; on a cluster the trial logs
        # must reach `ray job logs`.
        from slmscale.console import init_ray

        with _local_ray_settings(local=not joining_cluster):
            init_ray(include_dashboard=False, log_to_driver=joining_cluster)
    watch = None
    try:
        if joining_cluster or not started:
            check_cluster_reach(todo, stream)
        limit = max_concurrent or resources.max_concurrent_trials
        if limit is None and started and not joining_cluster:
            # A local Ray started here: its resources are all there will be.
            limit = trials_that_fit(todo, ray.cluster_resources())
        callbacks = [tune_callback(table)]
        if joining_cluster:  # why trials wait, nodes that cannot reach the store
            from slmscale.grid.clusterwatch import cluster_watch, refusal_stopper
            from slmscale.grid.node_reach import NodeReach

            job = todo[0]
            reach = NodeReach(job.tracking_uri, job.storage_path, [s.path for s in job.trial.data])
            watch = cluster_watch(table, units, reach, stream)
            callbacks.append(watch)
            stopper = _either(stopper, refusal_stopper(watch))
        tuner = tune.Tuner(
            tune.with_resources(tune_trial, {"CPU": 0.01}),
            param_space={"unit": tune.grid_search([_tune_config(u) for u in units])},
            tune_config=tune.TuneConfig(
                max_concurrent_trials=limit,
                # Every trial asks for the same 0.01 CPU: the next trial runs in the actor the
                # last one left (no process start, no placement; docs/grid.md).
                reuse_actors=True,
                trial_name_creator=lambda t: t.config["unit"]["name"],
                trial_dirname_creator=lambda t: t.config["unit"]["name"],
            ),
            run_config=tune.RunConfig(
                name=f"grid-{grid_name}",
                storage_path=todo[0].storage_path,
                callbacks=callbacks,
                stop=stopper,
                verbose=0,
            ),
        )
        tuner.fit()
    finally:
        if started:
            ray.shutdown()
    table.draw(force=True)
    if watch is not None and watch.refusal is not None:
        _refuse(todo, watch.refusal)
    return GridSummary(len(jobs) - len(todo), table)


@contextmanager
def _local_ray_settings(local: bool):
    """The environment a local Ray starts with (its processes inherit it; Train passes it on).

    No node of a local Ray can be preempted, so Train's preemption watcher (an actor per Train
    job, about 1.5 s of CPU each to start) has nothing to watch there; on a cluster it stays.
    """
    saved = os.environ.get(PREEMPTION_WATCHER_ENV)
    if local:
        os.environ.setdefault(PREEMPTION_WATCHER_ENV, "0")
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(PREEMPTION_WATCHER_ENV, None)


def _either(a, b):
    """Tune stops when either stopper says so (`a` may be None)."""
    from ray.tune.stopper import CombinedStopper

    return b if a is None else CombinedStopper(a, b)


def _refuse(jobs: list[TrialJob], why: str) -> None:
    """A trial the cluster can never place: its runs left open are FAILED, the grid exits 2."""
    from slmscale.errors import UserError
    from slmscale.tracking.runs import find_trial_runs

    for job in jobs:
        for run in find_trial_runs(job.tracking_uri, job.experiment_id, job.key, job.kind):
            if run.info.status == "RUNNING":
                finish(job, run.info.run_id, "FAILED", why)
    raise UserError(f"resources: {why}")
