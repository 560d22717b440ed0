"""The grid's console: where the grid stands, in one place, without flooding the terminal.

On a terminal the picture is redrawn in place (the way Ray Tune's reporter does) and never
exceeds the terminal's height: a header with done / running / failed / left, elapsed and an ETA
for the whole grid, then the running trials and the latest changes, as many as fit.  Why the
height matters: a redraw moves the cursor up over the previous picture, and the cursor cannot
move above the top of the screen.  A 127-line table on a 40-line terminal left every redraw's
top in the scrollback (523 stale copies after one demo).  Lines are cut at the terminal's width
for the same reason (a wrapped line is two rows).  A small grid that fits is shown whole;
`slmscale status SPEC` prints every trial of any grid.

When stderr is not a terminal (a log file, `ray job logs`, CI) nothing is redrawn: each change of
a trial's state is one plain line with the same header counts, so a log reads top to bottom, and
the final picture is the whole table once.

`TrialTable` is plain Python (tested without Ray); `tune_callback` adapts it to a Ray Tune
Callback.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import time
from dataclasses import dataclass, field

from slmscale.progress import format_seconds

#: States that end a trial; everything else is pending or running.
ENDED = ("FINISHED", "FAILED", "KILLED", "SKIPPED")

#: Where a trial table too tall for the terminal sends the reader for the rest.
FULL_TABLE_HINT = "`slmscale status SPEC` lists every trial"

_COLUMNS = f"{'trial':<36} {'state':<9} {'tokens':>21} {'loss':>7} {'eta':>8}"


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
    changed: int = 0  # order of the row's last state change (latest changes first)

    @property
    def fraction(self) -> float:
        if self.state == "FINISHED":
            return 1.0
        return min(1.0, self.tokens / self.total) if self.total else 0.0

    def line(self, now: float) -> str:
        frac = self.fraction
        eta = "-"
        if self.state == "RUNNING" and self.started and 0 < frac < 1:
            eta = format_seconds((now - self.started) * (1 - frac) / frac)
        loss = f"{self.loss:.3f}" if self.loss is not None else "-"
        done = f"{self.tokens:,}/{self.total:,}"
        return f"{self.name:<36} {self.state:<9} {done:>21} {loss:>7} {eta:>8} {self.note}"


@dataclass
class TrialTable:
    rows: dict[str, _Row] = field(default_factory=dict)
    stream: object = None
    #: Seconds between in-place redraws on a terminal (state changes always redraw).
    min_interval: float = 1.0
    #: None: decide from the stream (`isatty`).
    live: bool | None = None
    title: str = "grid"
    #: (columns, lines) of the terminal; None: asked of the stream at every redraw (resizes).
    size: tuple[int, int] | None = None
    _last: float = 0.0
    _drawn_lines: int = 0
    _t0: float = field(default_factory=time.monotonic)
    _changes: itertools.count = field(default_factory=itertools.count)

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
        if changed:
            row.changed = next(self._changes) + 1
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
        """The whole table: the header, then one line per trial in grid order."""
        now = time.monotonic()
        lines = [self.header(), _COLUMNS, *(r.line(now) for r in self.rows.values())]
        return "\n".join(line.rstrip() for line in lines)

    def render_live(self, lines: int) -> str:
        """At most `lines` lines: the header, the running trials, then the latest changes.

        A grid that fits is shown whole, in grid order.  Otherwise running trials come first
        (earliest started first), then ended trials (latest change first), then the next ones
        waiting, and a last line says how many are not shown and where they are.
        """
        budget = lines - 2  # the header and the column names
        if len(self.rows) <= budget:
            return self.render()
        if budget < 2:  # a terminal a few lines high: the counts alone
            return self.header()
        running = sorted(
            (r for r in self.rows.values() if r.state == "RUNNING"), key=lambda r: r.started or 0
        )
        ended = sorted(
            (r for r in self.rows.values() if r.state in ENDED), key=lambda r: -r.changed
        )
        waiting = [r for r in self.rows.values() if r.state not in ENDED and r.state != "RUNNING"]
        shown = (running + ended + waiting)[: budget - 1]  # one line for what is not shown
        now = time.monotonic()
        rest = len(self.rows) - len(shown)
        body = [self.header(), _COLUMNS, *(r.line(now) for r in shown)]
        body.append(f"... {rest} more trials not shown; {FULL_TABLE_HINT}")
        return "\n".join(line.rstrip() for line in body)

    def _log_line(self, row: _Row) -> None:
        loss = f" loss {row.loss:.3f}" if row.loss is not None and row.state in ENDED else ""
        note = f" ({row.note})" if row.note else ""
        print(f"{self.header()} | {row.name}: {row.state}{loss}{note}", file=self._out, flush=True)

    def terminal_size(self) -> tuple[int, int]:
        """(columns, lines) of the terminal the table is drawn on."""
        if self.size is not None:
            return self.size
        try:
            size = os.get_terminal_size(self._out.fileno())
        except (AttributeError, ValueError, OSError):
            size = shutil.get_terminal_size()
        return size.columns, size.lines

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
        columns, lines = self.terminal_size()
        # One line stays free for the cursor after the last newline (else the screen scrolls).
        text = self.render_live(max(1, lines - 1))
        text = "\n".join(line[: max(1, columns - 1)] for line in text.split("\n"))
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
        return trial.config["unit"]["keys"]

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
