"""The grid's console: one table with a header of counts, no flood, and no platform chatter."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import pyte
import pytest

from slmscale import cli, console
from slmscale.grid.table import TrialTable


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _table(stream) -> TrialTable:
    t = TrialTable(stream=stream, title="grid smoke")
    t.add("a", "smoke-20M-D1M-e1", 1000, work=1.0)
    t.add("b", "smoke-20M-D2M-e1", 2000, work=2.0)
    t.add("c", "smoke-85M-D2M-e1", 2000, work=8.0)
    return t


def test_a_log_gets_one_plain_line_per_state_change_not_a_table_per_tick():
    out = io.StringIO()
    t = _table(out)
    t.update("a", state="RUNNING")
    for tokens in range(0, 1000, 50):  # 20 progress reports: none of them prints
        t.update("a", tokens=tokens, loss=3.0)
    t.update("a", state="FINISHED", tokens=1000, loss=2.5)
    t.update("b", state="RUNNING")
    t.update("b", state="FAILED", note="non-finite loss")
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    assert "\x1b[" not in out.getvalue()
    assert lines[0].startswith("grid smoke: 0/3 done, 1 running, 2 left | elapsed ")
    assert lines[0].endswith("| smoke-20M-D1M-e1: RUNNING")
    assert lines[1].startswith("grid smoke: 1/3 done, 0 running, 2 left")
    assert lines[1].endswith("smoke-20M-D1M-e1: FINISHED loss 2.500")
    assert "1 failed" in lines[3] and lines[3].endswith("FAILED (non-finite loss)")


def test_a_terminal_gets_the_table_redrawn_in_place():
    out = _Tty()
    t = _table(out)
    t.update("a", state="RUNNING")
    t.update("a", state="FINISHED", tokens=1000)
    text = out.getvalue()
    first, second = text.split("\x1b[")[0], text.split("\x1b[", 1)[1]
    assert first.splitlines()[0].startswith("grid smoke: 0/3 done, 1 running")
    # The second drawing starts by moving up over the first (header + column line + 3 rows).
    assert second.startswith("5F") and "grid smoke: 1/3 done" in second


def test_grid_eta_weighs_trials_by_their_compute():
    t = _table(io.StringIO())
    t._t0 -= 100.0  # 100 s elapsed
    t.update("a", state="FINISHED", tokens=1000)  # 1 of 11 units of work done
    assert abs(t.eta_seconds() - 1000.0) < 5.0
    assert "ETA 16:4" in t.header()  # 16:40


def test_the_final_picture_in_a_log_is_the_whole_table_once():
    out = io.StringIO()
    t = _table(out)
    t.draw(force=True)
    lines = out.getvalue().splitlines()
    assert len(lines) == 5 and lines[1].startswith("trial")


def test_platform_loggers_are_quiet_by_default_and_verbose_keeps_them(monkeypatch, capsys):
    for name in ("ray", "mlflow", "alembic"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    monkeypatch.setenv("RAY_BACKEND_LOG_LEVEL", "unset")  # restored after the test
    monkeypatch.delenv("RAY_BACKEND_LOG_LEVEL")
    monkeypatch.setattr(console, "_quiet", False)

    assert cli.main(["-v", "grid", "tune_spaces/paper.yaml", "--dry-run"]) == 0
    assert logging.getLogger("mlflow").level == logging.NOTSET and not console.is_quiet()

    assert cli.main(["grid", "tune_spaces/paper.yaml", "--dry-run"]) == 0
    assert logging.getLogger("ray").level == logging.ERROR
    assert logging.getLogger("mlflow").level == logging.WARNING
    assert logging.getLogger("alembic").level >= logging.WARNING
    import os

    assert os.environ["RAY_BACKEND_LOG_LEVEL"] == "fatal"
    assert console.ray_logging_level() == logging.ERROR
    capsys.readouterr()


# -- a real terminal: the table's bytes through a pseudo-terminal into a terminal emulator ------

_DRIVE_125_TRIALS = """
import sys
from slmscale.grid.table import TrialTable
t = TrialTable(title="grid demo", min_interval=3600.0)  # only state changes redraw
keys = [f"k{i}" for i in range(125)]
for i, k in enumerate(keys):
    t.add(k, f"demo-{1 + i % 11}M-D{35 * (1 + i // 11)}k-e{1 + i % 3}", 1000 * (1 + i), work=1.0 + i)
t.draw(force=True)
for i, k in enumerate(keys):  # two at a time, as the demo's packs run
    t.update(k, state="RUNNING")
    t.update(k, tokens=500 * (1 + i), loss=3.0)
    if i % 2:
        prev = keys[i - 1]
        end = "FAILED" if i % 40 == 1 else "FINISHED"
        t.update(prev, state=end, tokens=1000 * i, loss=2.0, note="non-finite loss" if end == "FAILED" else None)
        t.update(k, state="FINISHED", tokens=1000 * (1 + i), loss=1.9)
t.update(keys[-1], state="FINISHED", tokens=125000, loss=1.8)
t.draw(force=True)
"""


class _Scrollback(pyte.Screen):
    """A terminal that keeps what scrolls off its top (pyte's HistoryScreen, 5x faster)."""

    def __init__(self, columns: int, lines: int) -> None:
        super().__init__(columns, lines)
        self.scrolled: list[str] = []

    def index(self) -> None:
        top, bottom = self.margins or (0, self.lines - 1)
        if self.cursor.y == bottom:
            row = self.buffer[top]
            self.scrolled.append("".join(row[x].data for x in range(self.columns)).rstrip())
        super().index()


def _through_a_pty(code: str, columns: int, lines: int) -> bytes:
    """Everything a child writes to stderr on a `columns` x `lines` pseudo-terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=slave, stdout=slave, stderr=slave, close_fds=True
    )
    os.close(slave)
    out = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert child.wait(timeout=300) == 0, out[-2000:].decode(errors="replace")
    return bytes(out)


@pytest.mark.parametrize(("columns", "lines"), [(120, 40), (60, 12)])
def test_a_125_trial_grid_never_outgrows_the_terminal(columns, lines):
    raw = _through_a_pty(_DRIVE_125_TRIALS, columns, lines)
    text = raw.decode()
    frames = re.split(r"\x1b\[\d+F\x1b\[J", text)
    assert len(frames) > 125  # one redraw per state change at least
    tallest = max(f.count("\n") for f in frames)
    assert tallest <= lines - 1, f"a frame of {tallest} lines on a {lines}-line terminal"

    screen = _Scrollback(columns, lines)
    pyte.Stream(screen).feed(text)
    assert not screen.scrolled, f"{len(screen.scrolled)} lines scrolled off: {screen.scrolled[:3]}"
    shown = [line.rstrip() for line in screen.display]
    headers = [line for line in shown if line.startswith("grid demo: ")]
    assert len(headers) == 1 and headers[0].startswith(
        "grid demo: 121/125 done, 0 running, 4 failed"
    )
    assert any("slmscale status" in line for line in shown) or columns < 80
    assert all(len(line) < columns for line in shown)


def test_a_tall_grid_shows_running_then_latest_changes_then_the_next_waiting():
    t = TrialTable(stream=io.StringIO(), title="grid big")
    for i in range(30):
        t.add(f"k{i}", f"trial-{i:02d}", 100)
    t.update("k3", state="RUNNING")
    t.update("k0", state="RUNNING")
    t.update("k1", state="FINISHED", loss=2.0)
    t.update("k2", state="FAILED", note="non-finite loss")
    lines = t.render_live(10).splitlines()
    assert len(lines) == 10 and lines[0].startswith("grid big: 1/30 done, 2 running, 1 failed")
    names = [line.split()[0] for line in lines[2:-1]]
    assert names == [
        "trial-03",
        "trial-00",
        "trial-02",
        "trial-01",
        "trial-04",
        "trial-05",
        "trial-06",
    ]
    assert lines[-1] == "... 23 more trials not shown; `slmscale status SPEC` lists every trial"
    assert t.render_live(2).splitlines() == [t.header()]  # a terminal two lines high: counts only
