"""A small progress display for long-running commands (stderr; no dependency).

On a terminal it redraws one line; otherwise (CI, logs) it prints a line at most every
`min_interval` seconds, so logs stay readable.  `fmt=format_seconds` shows amounts of audio as
h:mm:ss (tokenize and kmeans count audio-seconds, not files, so a long file moves the bar) and
adds the speed as a multiple of real time.  Updates may come from another thread (the Ray
pipeline's progress poller).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable


def format_seconds(s: float) -> str:
    s = int(max(0, s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class Progress:
    def __init__(
        self,
        total: float | None,
        desc: str,
        unit: str = "",
        stream=None,
        min_interval: float = 5.0,
        fmt: Callable[[float], str] | None = None,
    ):
        self.total, self.desc, self.unit, self.fmt = total, desc, unit, fmt
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.min_interval = 0.2 if self.tty else min_interval
        self.done = 0.0
        self.start = time.monotonic()
        self._last = 0.0
        self.extra = ""
        self._lock = threading.Lock()

    def update(self, n: float = 1, extra: str | None = None) -> None:
        with self._lock:
            self.done += n
            if extra is not None:
                self.extra = extra
            now = time.monotonic()
            if now - self._last >= self.min_interval:
                self._last = now
                self._draw()

    def set(self, done: float, extra: str | None = None) -> None:
        self.update(done - self.done, extra)

    def _amount(self, x: float) -> str:
        return self.fmt(x) if self.fmt else f"{x:,.0f}"

    def _line(self) -> str:
        elapsed = time.monotonic() - self.start
        speed = ""
        if self.fmt is format_seconds and elapsed > 0 and self.done > 0:
            speed = f" {self.done / elapsed:.3g}x real time"
        if self.total:
            frac = min(1.0, self.done / self.total)
            eta = elapsed * (1 - frac) / frac if frac > 0 else float("nan")
            eta_s = format_seconds(eta) if frac > 0 else "?"
            s = (
                f"{self.desc}: {self._amount(self.done)}/{self._amount(self.total)}{self.unit} "
                f"({frac:.0%}){speed} elapsed {format_seconds(elapsed)} eta {eta_s}"
            )
        else:
            s = f"{self.desc}: {self._amount(self.done)}{self.unit}{speed} elapsed {format_seconds(elapsed)}"
        return f"{s} {self.extra}".rstrip()

    def _draw(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + self._line())
        else:
            self.stream.write(self._line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        with self._lock:
            self._draw()
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
