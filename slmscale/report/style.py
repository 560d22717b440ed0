"""What every report figure shares, so each is readable at the report's width.

- Width: a figure is at most `MAX_WIDTH_IN` inches at 100 dpi, legend included, so the HTML
  report (62em, ~1000 px) shows it at full size: its 9 pt text stays ~12 px, never shrunk.
- Log axes of accuracies and losses read as plain numbers (0.5, 0.7, 1), not `9x10^-1`:
  `plain_log_ticks`.  Compute keeps powers of ten.
- Legends never sit on the data: beside the axes (`legend_beside`) or under the panels of a
  multi-panel figure (`figure_legend`), never inside an axes.
- Chance is drawn on every accuracy axis (`chance_line`).
- PNG and SVG with fixed metadata (`save`), so reruns give the same files.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator  # noqa: E402

plt.rcParams.update({"svg.hashsalt": "slmscale", "figure.dpi": 100, "font.size": 9})

MAX_WIDTH_IN = 9.6  # 960 px at 100 dpi
PANEL_IN = (4.2, 3.1)  # one panel of a multi-panel figure
LEGEND_SIZE = 7
CHANCE_STYLE = {"color": "grey", "ls": ":", "lw": 1.0}


def _nice_ticks(lo: float, hi: float) -> list[float]:
    """Plain-number ticks for a log axis from lo to hi: 1-9 x 10^k, thinned to <= 8."""
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= 0 or hi <= lo:
        return []
    k0, k1 = int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi)))
    for subs in ((1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 5, 7), (1, 2, 5), (1, 3), (1,)):
        ticks = [s * 10.0**k for k in range(k0, k1 + 1) for s in subs]
        ticks = [t for t in ticks if lo <= t * (1 + 1e-9) and t <= hi * (1 + 1e-9)]
        if len(ticks) <= 8:
            return ticks if len(ticks) >= 4 else _linear_ticks(lo, hi)
    return ticks


def _linear_ticks(lo: float, hi: float) -> list[float]:
    """A narrow log axis (less than ~3 of 1-9 x 10^k inside): evenly spaced round numbers."""
    ticks = MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    return [float(t) for t in ticks if lo <= t <= hi and t > 0]


def plain_log_ticks(ax, axis: str = "y") -> None:
    """Label a log axis with plain numbers at its current limits (call after plotting)."""
    a = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    ticks = _nice_ticks(lo, hi)
    if not ticks:
        return
    a.set_major_locator(FixedLocator(ticks))
    a.set_minor_locator(NullLocator())
    a.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))


def chance_line(ax, chance: float | None) -> None:
    if chance is not None:
        ax.axhline(chance, label="chance", **CHANCE_STYLE)


def legend_beside(ax):
    """The axes' legend to its right, outside the data area."""
    if not ax.get_legend_handles_labels()[0]:
        return None
    return ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        borderaxespad=0.0,
        fontsize=LEGEND_SIZE,
        frameon=False,
    )


def figure_legend(fig, axes, ncol: int = 4):
    """One legend for every panel (labels deduplicated), under the panels."""
    seen: dict = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if not lab.startswith("_"):
                seen.setdefault(lab, h)
    if not seen:
        return None
    fig.tight_layout()
    return fig.legend(
        list(seen.values()),
        list(seen),
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=min(ncol, len(seen)),
        fontsize=LEGEND_SIZE,
        frameon=False,
    )


def panels(n: int):
    """A grid of `n` panels, two a row (unused cells hidden): (fig, list of axes)."""
    cols = 1 if n == 1 else 2
    rows = -(-n // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(PANEL_IN[0] * cols, PANEL_IN[1] * rows), squeeze=False
    )
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def save(fig, out_dir: Path, name: str) -> None:
    """PNG and SVG, legend and labels included (tight box), with fixed metadata."""
    out_dir.mkdir(parents=True, exist_ok=True)
    kw = {"bbox_inches": "tight", "pad_inches": 0.1}
    fig.savefig(out_dir / f"{name}.png", metadata={"Software": None}, **kw)
    fig.savefig(out_dir / f"{name}.svg", metadata={"Date": None, "Creator": None}, **kw)
    plt.close(fig)
