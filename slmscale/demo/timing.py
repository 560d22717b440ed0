"""Where the demo's time goes: per stage, and per trial (training against fixed cost).

Read from the MLflow store after the grid, so it measures what ran, not what was planned:

- a trial's run is opened by its Tune trial before Ray Train starts, and closed by the Train
  worker after benchmark scoring and the model upload; its wall time is end - start;
- its training time is tokens / tokens_per_sec (the training core's own measure of its steps),
  counting only the tokens the run trained itself: a WSD branch its cooldown (the trunk's part
  is its trunk's run, listed too: `slmscale.branch_step`, kind `trunk`);
- its fixed cost is the rest: Ray Train start (controller, worker process, imports), model
  build and data, periodic test-loss evaluations, benchmark scoring, saving, MLflow writes;
- `start` splits that fixed cost: run opened -> first logged point (Train start-up, worker
  imports, model and data), `end`: last curve point -> run closed (final test loss, benchmark
  scoring, model save, MLflow close);
- trials trained by one Train job one after another (`resources.trials_per_job`, a pack) have
  their runs opened by the warm worker, so the job's start-up (Tune trial start -> first run
  opened: Ray Train, worker process, imports) is in none of them: each trial of the job is
  charged an equal share of it (`job_share_s`, part of its fixed cost and of its total).

Edge module (reads MLflow through slmscale.tracking).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from slmscale.tracking.runs import own_tokens
from slmscale.tracking.schema import (
    KIND_TRAIN,
    KIND_TRUNK,
    M_TEST_LOSS,
    M_TOKENS_PER_SEC,
    M_TRAIN_LOSS,
    TAG_KIND,
    TAG_TRAIN_JOB,
    TAG_TRAIN_JOB_STARTED,
)


@dataclass(frozen=True)
class TrialTime:
    name: str
    grid: str  # the experiment whose grid ran it
    total_s: float  # run opened -> run closed
    train_s: float  # tokens / tokens_per_sec
    start_s: float  # run opened -> first logged point
    end_s: float  # last curve point -> run closed
    job_share_s: float = 0.0  # this trial's share of its pack's Train job start-up

    @property
    def fixed_s(self) -> float:
        return max(self.total_s - self.train_s, 0.0)


def trial_times(
    tracking_uri: str, experiments: list[str], grids: set[str] | None = None
) -> list[TrialTime]:
    """One TrialTime per FINISHED train (and WSD trunk) run of the experiments (of those in
    `grids`, when given)."""
    from slmscale.tracking.store import client

    c = client(tracking_uri)
    out, jobs = [], {}
    for name in experiments:
        exp = c.get_experiment_by_name(name)
        if exp is None or (grids is not None and name not in grids):
            continue
        runs = c.search_runs([exp.experiment_id], max_results=5000)
        for r in runs:
            if r.data.tags.get(TAG_KIND) not in (KIND_TRAIN, KIND_TRUNK):
                continue
            if r.info.status != "FINISHED" or r.info.end_time is None:
                continue
            tps = r.data.metrics.get(M_TOKENS_PER_SEC)
            tokens = own_tokens(r)
            stamps = [
                m.timestamp
                for key in (M_TRAIN_LOSS, M_TEST_LOSS)
                for m in c.get_metric_history(r.info.run_id, key)
            ]
            t0, t1 = r.info.start_time, r.info.end_time
            first, last = (min(stamps), max(stamps)) if stamps else (t0, t1)
            job = r.data.tags.get(TAG_TRAIN_JOB)
            if job and r.data.tags.get(TAG_TRAIN_JOB_STARTED):
                started = float(r.data.tags[TAG_TRAIN_JOB_STARTED])
                jobs.setdefault(job, (started, []))[1].append((len(out), t0))
            out.append(
                TrialTime(
                    name=r.info.run_name or r.info.run_id,
                    grid=name,
                    total_s=(t1 - t0) / 1000,
                    train_s=tokens / tps if tps else 0.0,
                    start_s=max(first - t0, 0) / 1000,
                    end_s=max(t1 - last, 0) / 1000,
                )
            )
    return _charge_job_start_up(out, jobs)


def _charge_job_start_up(times: list[TrialTime], jobs: dict) -> list[TrialTime]:
    """Share each pack's start-up (job start -> its first run opened) among its trials."""
    from dataclasses import replace

    times = list(times)
    for started, members in jobs.values():
        start_up = max(min(t0 for _, t0 in members) - started, 0) / 1000
        share = start_up / len(members)
        for i, _ in members:
            times[i] = replace(times[i], total_s=times[i].total_s + share, job_share_s=share)
    return times


def _median(xs) -> float:
    return statistics.median(xs) if xs else 0.0


def summary(times: list[TrialTime]) -> dict:
    """Medians per trial and sums over trials (seconds)."""
    return {
        "trials": len(times),
        "median_total_s": _median([t.total_s for t in times]),
        "median_train_s": _median([t.train_s for t in times]),
        "median_fixed_s": _median([t.fixed_s for t in times]),
        "median_start_s": _median([t.start_s for t in times]),
        "median_end_s": _median([t.end_s for t in times]),
        "median_job_share_s": _median([t.job_share_s for t in times]),
        "sum_total_s": sum(t.total_s for t in times),
        "sum_train_s": sum(t.train_s for t in times),
    }


def format_breakdown(
    stage_seconds: dict[str, float],
    reused: dict[str, bool],
    times: list[TrialTime],
    grid_stages: dict[str, str],
) -> str:
    """The table `slmscale demo` prints at the end: stages, then per-trial medians."""
    lines = ["where the time went:", f"  {'stage':<16}{'seconds':>9}  {'trials':>6}  training"]
    by_grid: dict[str, list[TrialTime]] = {}
    for t in times:
        by_grid.setdefault(t.grid, []).append(t)
    for stage, secs in stage_seconds.items():
        note = " (reused)" if reused.get(stage) else ""
        trials = by_grid.get(grid_stages[stage], []) if stage in grid_stages else []
        extra = ""
        if trials and not reused.get(stage):
            train = sum(t.train_s for t in trials)
            extra = f"{len(trials):>6}  {train:6.1f} s in trials"
        lines.append(f"  {stage:<16}{secs:9.1f}{note}  {extra}".rstrip())
    total = sum(stage_seconds.values())
    lines.append(f"  {'total':<16}{total:9.1f}")
    if times:
        s = summary(times)
        lines += [
            f"per trial (median of {s['trials']} trials): "
            f"{s['median_total_s']:.1f} s in all = {s['median_train_s']:.1f} s training + "
            f"{s['median_fixed_s']:.1f} s fixed cost",
            f"  fixed cost: run opened -> first logged point {s['median_start_s']:.1f} s "
            f"(Ray Train start, worker imports, model, data); last point -> run closed "
            f"{s['median_end_s']:.1f} s (final test loss, benchmark scoring, model save)"
            + (
                f"; share of its Train job's start-up {s['median_job_share_s']:.1f} s"
                if s["median_job_share_s"]
                else ""
            ),
            f"  all trials: {s['sum_train_s']:.0f} s training of {s['sum_total_s']:.0f} s in "
            f"trials ({100 * s['sum_train_s'] / max(s['sum_total_s'], 1e-9):.0f}%)",
        ]
    return "\n".join(lines)
