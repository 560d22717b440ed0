"""The live table of trials on stderr: state, tokens done / total, current loss, ETA.

`TrialTable` is plain Python (tested without Ray); `tune_callback` adapts it to a Ray Tune
Callback.  Redraws at most every `min_interval` seconds, and once at the end.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from slmscale.progress import format_seconds


@dataclass
class _Row:
    name: str
    total: int
    state: str = "PENDING"
    tokens: int = 0
    loss: float | None = None
    started: float | None = None
    note: str = ""


@dataclass
class TrialTable:
    rows: dict[str, _Row] = field(default_factory=dict)
    stream: object = None
    min_interval: float = 10.0
    _last: float = 0.0

    def add(self, key: str, name: str, total: int) -> None:
        self.rows[key] = _Row(name, total)

    def update(self, key: str, *, state=None, tokens=None, loss=None, note=None) -> None:
        row = self.rows[key]
        if state == "RUNNING" and row.started is None:
            row.started = time.monotonic()
        for attr, value in (("state", state), ("tokens", tokens), ("loss", loss), ("note", note)):
            if value is not None:
                setattr(row, attr, value)
        self.draw()

    def render(self) -> str:
        lines = [f"{'trial':<36} {'state':<9} {'tokens':>21} {'loss':>7} {'eta':>8}"]
        now = time.monotonic()
        for row in self.rows.values():
            frac = row.tokens / row.total if row.total else 0.0
            eta = "-"
            if row.state == "RUNNING" and row.started and 0 < frac < 1:
                eta = format_seconds((now - row.started) * (1 - frac) / frac)
            loss = f"{row.loss:.3f}" if row.loss is not None else "-"
            done = f"{row.tokens:,}/{row.total:,}"
            lines.append(f"{row.name:<36} {row.state:<9} {done:>21} {loss:>7} {eta:>8} {row.note}")
        return "\n".join(line.rstrip() for line in lines)

    def draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.min_interval:
            self._last = now
            print(self.render() + "\n", file=self.stream or sys.stderr, flush=True)

    @property
    def failed(self) -> int:
        return sum(r.state == "FAILED" for r in self.rows.values())

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for r in self.rows.values():
            counts[r.state] = counts.get(r.state, 0) + 1
        parts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
        return f"{len(self.rows)} trials: {parts}"


def tune_callback(table: TrialTable):
    """A ray.tune.Callback feeding `table` from trial results (import Ray only here)."""
    from ray import tune

    class _Cb(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            table.update(trial.config["job"]["key"], state="RUNNING")

        def on_trial_result(self, iteration, trials, trial, result, **info):
            key = trial.config["job"]["key"]
            state = result.get("status") or "RUNNING"
            table.update(
                key,
                state=state,
                tokens=result.get("tokens_seen"),
                loss=result.get("loss"),
                note=result.get("reason") or "",
            )

        def on_trial_error(self, iteration, trials, trial, **info):
            table.update(trial.config["job"]["key"], state="FAILED", note="(Tune error)")

    return _Cb()
