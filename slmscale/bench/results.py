"""Bench results: one row per figure, with its baseline, ratio and target; machine description.

A row's `ratio` is always value / baseline (both measured in the same run).  A target is a rule
on the value or on the ratio (`judge`); a missed target says by how much in the row's note, and
the section adds what limits it, from a profile.
"""

from __future__ import annotations

import importlib.metadata as md
import operator
import os
import platform
import re
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from slmscale.units import write_bytes_atomic, write_json_atomic

NO_GPU = "no GPU visible: not measured"
OPS = {">=": operator.ge, "<=": operator.le}


@dataclass
class Figure:
    """One measured figure.  `ratio` = value / baseline when a baseline was measured alongside.

    `target` is a human-readable rule ("<= 1 s", "ratio >= 20"); `met` is whether it holds here,
    None when the target does not apply or the figure was not measured (value None).
    """

    section: str
    name: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ratio is None and self.value is not None and self.baseline:
            self.ratio = self.value / self.baseline

    def add_note(self, text: str) -> None:
        self.note = f"{self.note}; {text}" if self.note else text


def judge(fig: Figure, on: str, op: str, threshold: float, label: str = "") -> Figure:
    """Set the row's target (`on` "value" or "ratio"), whether it is met, and by how much not."""
    unit = fig.unit if on == "value" else "x"
    fig.target = label or f"{'' if on == 'value' else 'ratio '}{op} {threshold:g} {unit}".strip()
    fig.extra["target_rule"] = {"on": on, "op": op, "threshold": threshold}
    got = fig.value if on == "value" else fig.ratio
    if got is None:
        fig.met = None
        return fig
    fig.met = bool(OPS[op](got, threshold))
    if not fig.met:
        factor = threshold / got if op == ">=" else got / threshold
        fig.add_note(f"missed: {got:.4g} {unit} vs {op} {threshold:g} {unit} ({factor:.2f}x short)")
    return fig


def not_measured(section: str, name: str, unit: str, reason: str = NO_GPU, **kw) -> Figure:
    """An n/a row: the figure exists on this bench but was not measured here."""
    return Figure(section, name, None, unit, note=reason, **kw)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def load_average() -> list[float] | None:
    """1/5/15-minute load averages: other users of a shared CPU skew every CPU figure."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_description() -> dict:
    import torch

    gpu = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = {
            "name": props.name,
            "count": torch.cuda.device_count(),
            "memory_gb": round(props.total_memory / 2**30, 1),
        }
    dists = ("torch", "torchaudio", "transformers", "ray", "mlflow", "scipy", "numpy", "pyarrow")
    return {
        "hostname": socket.gethostname(),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_start": load_average(),
        "gpu": gpu,
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in dists},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def machine_slug(desc: dict) -> str:
    """A file name for the machine: GPU name if any, else CPU cores + model."""
    if desc.get("gpu"):
        base = f"gpu-{desc['gpu']['count']}x-{desc['gpu']['name']}"
    else:
        base = f"cpu-{desc['cpu_cores']}core-{desc['cpu']}"
    return re.sub(r"[^A-Za-z0-9]+", "-", base).strip("-").lower()[:80]


def _cells(f: Figure, no: str) -> list[str]:
    val = "n/a" if f.value is None else f"{f.value:.4g} {f.unit}".strip()
    base = "" if f.baseline is None else f"{f.baseline:.4g} {f.unit} ({f.baseline_name})"
    ratio = "" if f.ratio is None else f"{f.ratio:.3g}x"
    met = {True: "yes", False: no, None: "-"}[f.met]
    return [f.section, f.name, val, base, ratio, f.target, met]


HEAD = ["section", "figure", "value", "baseline", "ratio", "target", "met"]


def _notes(figures: list[Figure]) -> list[str]:
    notes = [f"- {f.section}/{f.name}: {f.note}" for f in figures if f.note]
    return [""] + notes if notes else []


def render_table(figures: list[Figure]) -> str:
    """The plain-text table the command prints, then one note per row that has one."""
    rows = [_cells(f, "NO") for f in figures]
    widths = [max(len(c) for c in col) for col in zip(HEAD, *rows, strict=True)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    lines = [fmt(HEAD), fmt(["-" * w for w in widths]), *[fmt(r) for r in rows]]
    return "\n".join(lines + _notes(figures))


def machine_line(desc: dict) -> str:
    gpu = desc["gpu"]["name"] if desc.get("gpu") else "none"
    v = desc["versions"]
    load = desc.get("load_average_start")
    load_s = f"; load average at start {load[0]:g} (1 min)" if load else ""
    return (
        f"Machine: {desc['cpu']} ({desc['cpu_cores']} cores), GPU: {gpu}; "
        f"torch {v['torch']}, ray {v['ray']}{load_s}"
    )


def render_markdown(figures: list[Figure], desc: dict) -> str:
    out = [machine_line(desc), "", "| " + " | ".join(HEAD) + " |", "|---" * len(HEAD) + "|"]
    out += ["| " + " | ".join(_cells(f, "**no**")) + " |" for f in figures]
    return "\n".join(out + _notes(figures)) + "\n"


def write_results(figures: list[Figure], desc: dict, path: str | Path) -> None:
    """JSON at `path` and the markdown table beside it (.md), both written atomically."""
    path = Path(path)
    write_json_atomic(path, {"machine": desc, "figures": [asdict(f) for f in figures]})
    write_bytes_atomic(path.with_suffix(".md"), render_markdown(figures, desc).encode())
