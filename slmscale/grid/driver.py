"""`slmscale grid` as one driver among others: claims, Ctrl-C, and an outcome read from the runs.

- Claims (slmscale.grid.claims): the driver claims each unfinished trial before handing it to
  Tune.  Trials another driver holds are waited for; when it lets go, its result stands
  (FINISHED or FAILED), and a trial it left unfinished (KILLED, or RUNNING because it died) is
  claimed and resumed here.  Two drivers started together share the grid and both exit 0.
- Ctrl-C: the first stops Tune (a Stopper, so Tune ends its trials and saves its state); each
  trial's training keeps its latest checkpoint in the storage path.  Runs left RUNNING are
  closed KILLED, and the command says how to resume (a rerun resumes them into the same runs).
  A second Ctrl-C stops at once.  Exit 130.
- The outcome is the runs' final states in the store, not Tune's view of its trials: the exit
  code is 0 only when every trial's run is FINISHED.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

from ray import tune

from slmscale.config.grid import ResourcesSpec
from slmscale.grid.claims import Claims, claims_dir
from slmscale.grid.runner import TrialJob
from slmscale.tracking.runs import INTERRUPTED_REASON, find_trial_runs, finish_run, trial_status

EXIT_INTERRUPTED = 130
WAIT_POLL_S = 2.0


class StopWhenAsked(tune.Stopper):
    """A Tune Stopper that ends the whole experiment once `event` is set (by Ctrl-C)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, trial_id, result) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.event.is_set()

    def __getstate__(self) -> dict:  # Tune pickles its run config; an Event does not pickle
        return {}

    def __setstate__(self, state: dict) -> None:
        self.event = threading.Event()


@dataclass
class GridOutcome:
    statuses: dict[str, str | None]  # trial key -> its run's final status (None: no run)
    skipped: int  # FINISHED before this driver started
    interrupted: bool
    waited: int = 0  # trials another driver held while this one ran
    stopped: list[str] = field(default_factory=list)  # keys closed KILLED by the interrupt

    def counts(self) -> dict[str, int]:
        c = {"done": 0, "failed": 0, "killed": 0, "running": 0, "left": 0}
        names = {"FINISHED": "done", "FAILED": "failed", "KILLED": "killed", "RUNNING": "running"}
        for status in self.statuses.values():
            c[names.get(status, "left")] += 1
        return c

    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return 0 if all(s == "FINISHED" for s in self.statuses.values()) else 1

    def render(self) -> str:
        c = self.counts()
        parts = [f"{n} {name}" for name, n in c.items() if n]
        line = f"{len(self.statuses)} trials (from the store): {', '.join(parts)}"
        if self.skipped:
            line += f"; {self.skipped} were FINISHED before this run"
        if self.waited:
            line += f"; {self.waited} trained by another driver"
        return line


@contextmanager
def ctrl_c_stops(event: threading.Event, stream):
    """While inside: the first SIGINT sets `event` (Tune's own handler is off), the second raises
    KeyboardInterrupt.  Outside the main thread (no signals there) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if event.is_set():
            raise KeyboardInterrupt
        event.set()
        print(
            "\ninterrupt: stopping the trials (each keeps its last checkpoint); "
            "Ctrl-C again to stop at once",
            file=stream,
            flush=True,
        )

    previous = signal.signal(signal.SIGINT, handler)
    before = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if before is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = before


def close_interrupted(jobs: list[TrialJob]) -> list[str]:
    """Runs the interrupt left RUNNING become KILLED (resumable); returns their trial keys."""
    closed = []
    for job in jobs:
        for run in find_trial_runs(job.tracking_uri, job.experiment_id, job.key):
            if run.info.status == "RUNNING":
                finish_run(job.tracking_uri, run.info.run_id, "KILLED", INTERRUPTED_REASON)
                closed.append(job.key)
    return closed


def drive(
    jobs: list[TrialJob],
    resources: ResourcesSpec,
    *,
    grid_name: str,
    max_concurrent: int | None = None,
    stream=None,
) -> GridOutcome:
    """Train every trial of `jobs` not yet FINISHED, sharing them with any other driver."""
    from slmscale.grid.tune import run_grid

    out = stream or sys.stderr
    status = {j.key: trial_status(j.tracking_uri, j.experiment_id, j.key) for j in jobs}
    skipped = sum(s == "FINISHED" for s in status.values())
    todo = [j for j in jobs if status[j.key] != "FINISHED"]
    stop = threading.Event()
    waited: set[str] = set()
    stopped: list[str] = []
    mine: list[TrialJob] = []
    job0 = jobs[0]
    claims = Claims(claims_dir(job0.tracking_uri, job0.storage_path, job0.experiment_id))
    with claims, ctrl_c_stops(stop, out):
        try:
            if not todo:
                print(f"grid {grid_name}: {len(jobs)} trials, all already FINISHED", file=out)
            while todo and not stop.is_set():
                mine, others = [], []
                for j in todo:
                    if not claims.try_claim(j.key):
                        others.append(j)
                        continue
                    now = trial_status(j.tracking_uri, j.experiment_id, j.key)
                    if now == "FINISHED" or (j.key in waited and now == "FAILED"):
                        claims.release(j.key)  # another driver's result stands
                    else:
                        mine.append(j)
                if others and not waited.issuperset(j.key for j in others):
                    print(
                        f"grid {grid_name}: {len(others)} trials are claimed by another driver "
                        f"({claims.holder(others[0].key)}); waiting for them",
                        file=out,
                        flush=True,
                    )
                waited.update(j.key for j in others)
                if mine:
                    run_grid(
                        mine,
                        resources,
                        grid_name=grid_name,
                        max_concurrent=max_concurrent,
                        stream=stream,
                        stopper=StopWhenAsked(stop),
                    )
                    if stop.is_set():  # closed while still claimed: nobody else resumes them yet
                        stopped += close_interrupted(mine)
                    for j in mine:
                        claims.release(j.key)
                    mine = []
                elif others:
                    stop.wait(WAIT_POLL_S)
                todo = others
        except KeyboardInterrupt:  # a second Ctrl-C, or one outside Tune
            stop.set()
            stopped += close_interrupted(mine)
    final = {j.key: trial_status(j.tracking_uri, j.experiment_id, j.key) for j in jobs}
    waited_on = len(waited & {k for k, s in final.items() if s in ("FINISHED", "FAILED")})
    return GridOutcome(final, skipped, stop.is_set(), waited=waited_on, stopped=stopped)
