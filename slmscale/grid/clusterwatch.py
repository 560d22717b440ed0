"""While a grid runs on a cluster: why trials wait, nodes that cannot reach the store, no hang.

A Tune callback run by the driver every few seconds (edge, issue 28):
- a trial started more than `PENDING_AFTER_S` ago that has reported nothing is waiting for its
  workers: the live table and its MLflow run (tag `slmscale.pending`, shown by `slmscale
  status`) say why, from the cluster's own state ("pending: waiting for {a10g: 1}; autoscaler:
  starting 1 x gpu.a10g"; slmscale.grid.cluster_state.pending_reason);
- when the autoscaler reports that no node type can ever hold a trial's workers, the grid stops
  (`refusal`, then `slmscale grid` exits 2 with that line) instead of waiting forever;
- each node that joins is asked once whether it reaches the tracking store, the storage path and
  the units (slmscale.grid.node_reach); a node that cannot is named on stderr.
"""

from __future__ import annotations

import sys
import time

PENDING_AFTER_S = 120.0
EVERY_S = 10.0  # how often the cluster is asked (each ask costs 0.1-0.4 s)
CACHE_S = 30.0  # a bundle's pending reason is reused this long


def cluster_watch(table, units, reach, stream=None):
    """A ray.tune.Callback (see module doc) over `units` (slmscale.grid.trainworker.TrainUnit)."""
    from ray import tune

    from slmscale.grid.cluster_state import pending_reason
    from slmscale.tracking.schema import TAG_PENDING

    by_name = {u.name: u for u in units}
    out = stream or sys.stderr

    class ClusterWatch(tune.Callback):
        def __init__(self) -> None:
            self.refusal: str | None = None
            self.started: dict[str, float] = {}  # Tune trial id -> when it started
            self.reported: set[str] = set()
            self.tagged: dict[str, str] = {}  # run id -> pending text set on it
            self.cache: dict[str, tuple[float, str]] = {}
            self.last = 0.0

        def on_trial_start(self, iteration, trials, trial, **info):
            self.started[trial.trial_id] = time.monotonic()

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if trial.trial_id not in self.reported:
                self.reported.add(trial.trial_id)
                self._clear(by_name.get(trial.config["unit"]["name"]))

        def on_step_begin(self, iteration, trials, **info):
            now = time.monotonic()
            if now - self.last < EVERY_S:
                return
            self.last = now
            for problem in reach.check_new_nodes() if reach is not None else []:
                print(f"warning: {problem}", file=out, flush=True)
            for trial in trials:
                began = self.started.get(trial.trial_id)
                if began is None or trial.trial_id in self.reported or trial.status != "RUNNING":
                    continue
                unit = by_name.get(trial.config["unit"]["name"])
                if unit is not None and now - began >= PENDING_AFTER_S:
                    self._pending(unit, now)

        def _pending(self, unit, now: float) -> None:
            res = unit.jobs[0].resources
            key = res.group()
            when, text = self.cache.get(key, (0.0, ""))
            if now - when > CACHE_S:
                text = pending_reason(res.per_worker())
                self.cache[key] = (now, text)
            job = unit.jobs[0]
            if job.key in table.rows:
                table.update(job.key, note=text)
            if "no node type" in text and self.refusal is None:
                self.refusal = text
            run_id = _open_run(job)
            if run_id and self.tagged.get(run_id) != text:
                _client(job).set_tag(run_id, TAG_PENDING, text[:5000])
                self.tagged[run_id] = text

        def _clear(self, unit) -> None:
            for job in unit.jobs if unit is not None else ():
                run_id = _open_run(job)
                if run_id in self.tagged:
                    _client(job).delete_tag(run_id, TAG_PENDING)
                    del self.tagged[run_id]

    return ClusterWatch()


def _client(job):
    from slmscale.tracking.store import client

    return client(job.tracking_uri)


def _open_run(job) -> str | None:
    """The trial's RUNNING run, if the driver opened it already (one trial per Train job)."""
    from slmscale.tracking.runs import find_trial_runs

    runs = find_trial_runs(job.tracking_uri, job.experiment_id, job.key, job.kind)
    return next((r.info.run_id for r in runs if r.info.status == "RUNNING"), None)


def refusal_stopper(watch):
    """A Tune Stopper ending the grid once `watch.refusal` is set (a trial that can never start)."""
    from ray import tune

    class StopOnRefusal(tune.Stopper):
        def __init__(self) -> None:
            self.watch = watch

        def __call__(self, trial_id, result) -> bool:
            return False

        def stop_all(self) -> bool:
            return self.watch is not None and self.watch.refusal is not None

        def __getstate__(self) -> dict:  # Tune pickles its run config; the watch stays here
            return {}

        def __setstate__(self, state: dict) -> None:
            self.watch = None

    return StopOnRefusal()
