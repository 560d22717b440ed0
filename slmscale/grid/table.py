"""The grid's console: where the grid stands, in one place, without flooding the terminal.

On a terminal the table is redrawn in place (the way Ray Tune's reporter does): a header with
done / running / failed / left, elapsed and an ETA for the whole grid, then one line per trial.
When stderr is not a terminal (a log file, `ray job logs`, CI) nothing is redrawn: each change of a
trial's state is one plain line with the same header counts, so a log reads top to bottom.

`TrialTable` is plain Python (tested without Ray); `tune_callback` adapts it to a Ray Tune
Callback.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from slmscale.progress import format_seconds

#: States that end a trial; everything else is pending or running.
ENDED = ("FINISHED", "FAILED", "KILLED", "SKIPPED")


@dataclass
class _Row:
    name: str
    total: int
    work: float  # the trial's share of the grid's compute (FLOPs, or tokens when not given)
    state: str = "PENDING"
    tokens: int = 0
    loss: float | None = None
    started: float | None = None
    note: str = ""

    @property
    def fraction(self) -> float:
        if self.state == "FINISHED":
            return 1.0
        return min(1.0, self.tokens / self.total) if self.total else 0.0


@dataclass
class TrialTable:
    rows: dict[str, _Row] = field(default_factory=dict)
    stream: object = None
    #: Seconds between in-place redraws on a terminal (state changes always redraw).
    min_interval: float = 1.0
    #: None: decide from the stream (`isatty`).
    live: bool | None = None
    title: str = "grid"
    _last: float = 0.0
    _drawn_lines: int = 0
    _t0: float = field(default_factory=time.monotonic)

    def add(self, key: str, name: str, total: int, work: float | None = None) -> None:
        self.rows[key] = _Row(name, total, float(work if work is not None else total))

    @property
    def _out(self):
        return self.stream or sys.stderr

    @property
    def _live(self) -> bool:
        if self.live is not None:
            return self.live
        isatty = getattr(self._out, "isatty", None)
        return bool(isatty and isatty())

    def update(self, key: str, *, state=None, tokens=None, loss=None, note=None) -> None:
        row = self.rows[key]
        changed = state is not None and state != row.state
        if state == "RUNNING" and row.started is None:
            row.started = time.monotonic()
        for attr, value in (("state", state), ("tokens", tokens), ("loss", loss), ("note", note)):
            if value is not None:
                setattr(row, attr, value)
        if self._live:
            self.draw(force=changed)
        elif changed:
            self._log_line(row)

    # -- what is shown ---------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        c = {"done": 0, "running": 0, "failed": 0, "killed": 0, "left": 0}
        for r in self.rows.values():
            if r.state == "FINISHED":
                c["done"] += 1
            elif r.state == "FAILED":
                c["failed"] += 1
            elif r.state == "KILLED":
                c["killed"] += 1
            elif r.state == "RUNNING":
                c["running"] += 1
            else:
                c["left"] += 1
        return c

    def eta_seconds(self) -> float | None:
        """Grid ETA from the compute done so far (each trial weighted by its FLOPs)."""
        total = sum(r.work for r in self.rows.values() if r.state not in ("FAILED", "KILLED"))
        done = sum(r.work * r.fraction for r in self.rows.values() if r.state != "FAILED")
        elapsed = time.monotonic() - self._t0
        if done <= 0 or total <= 0 or elapsed <= 0:
            return None
        return max(0.0, elapsed * (total - done) / done)

    def header(self) -> str:
        c = self.counts()
        eta = self.eta_seconds()
        parts = [f"{c['done']}/{len(self.rows)} done", f"{c['running']} running"]
        parts += [f"{c['failed']} failed"] if c["failed"] else []
        parts += [f"{c['killed']} interrupted"] if c["killed"] else []
        parts += [f"{c['left']} left"]
        elapsed = format_seconds(time.monotonic() - self._t0)
        tail = f"elapsed {elapsed}" + (f", ETA {format_seconds(eta)}" if eta is not None else "")
        return f"{self.title}: {', '.join(parts)} | {tail}"

    def render(self) -> str:
        lines = [self.header(), f"{'trial':<36} {'state':<9} {'tokens':>21} {'loss':>7} {'eta':>8}"]
        now = time.monotonic()
        for row in self.rows.values():
            frac = row.fraction
            eta = "-"
            if row.state == "RUNNING" and row.started and 0 < frac < 1:
                eta = format_seconds((now - row.started) * (1 - frac) / frac)
            loss = f"{row.loss:.3f}" if row.loss is not None else "-"
            done = f"{row.tokens:,}/{row.total:,}"
            lines.append(f"{row.name:<36} {row.state:<9} {done:>21} {loss:>7} {eta:>8} {row.note}")
        return "\n".join(line.rstrip() for line in lines)

    def _log_line(self, row: _Row) -> None:
        loss = f" loss {row.loss:.3f}" if row.loss is not None and row.state in ENDED else ""
        note = f" ({row.note})" if row.note else ""
        print(f"{self.header()} | {row.name}: {row.state}{loss}{note}", file=self._out, flush=True)

    def draw(self, force: bool = False) -> None:
        """Redraw in place on a terminal (at most every `min_interval` s unless forced)."""
        now = time.monotonic()
        if not self._live:
            if force:  # the final picture in a log: the whole table once
                print(self.render(), file=self._out, flush=True)
            return
        if not force and now - self._last < self.min_interval:
            return
        self._last = now
        text = self.render()
        # Move to the start of the previous drawing and clear to the end of the screen.
        clear = f"\x1b[{self._drawn_lines}F\x1b[J" if self._drawn_lines else ""
        print(clear + text, file=self._out, flush=True)
        self._drawn_lines = text.count("\n") + 1

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
    """A ray.tune.Callback feeding `table` from trial results (import Ray only here).

    A Tune trial trains one grid point or a pack of them (slmscale.grid.packs); every result
    names its grid point (`trial_key`).
    """
    from ray import tune

    def keys(trial) -> list[str]:
        return [job["key"] for job in trial.config["unit"]["jobs"]]

    class _Cb(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            if not trial.config["unit"]["packed"]:  # a pack's trials say when they start
                table.update(keys(trial)[0], state="RUNNING")

        def on_trial_result(self, iteration, trials, trial, result, **info):
            key = result.get("trial_key") or keys(trial)[0]
            if key not in table.rows:
                return
            state = result.get("status") or "RUNNING"
            table.update(
                key,
                state=state,
                tokens=result.get("tokens_seen"),
                loss=result.get("loss"),
                note=result.get("reason") or "",
            )

        def on_trial_error(self, iteration, trials, trial, **info):
            for key in keys(trial):
                if key in table.rows and table.rows[key].state not in ENDED:
                    table.update(key, state="FAILED", note="(Tune error)")

    return _Cb()
