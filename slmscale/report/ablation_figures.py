"""The paper's ablation figures, drawn from arms (slmscale.report.arms).

- Figure 3 (data ablation): each benchmark's accuracy by model size, one bar per corpus, with
  95% binomial intervals over the items scored and the chance level.
- Figure 5 (tokenizer ablation): the loss envelope and each benchmark's upper envelope against
  compute, one colour per tokenizer; a benchmark the laws find at chance for a tokenizer gets
  its points but no envelope line.
"""

from __future__ import annotations

import numpy as np

from slmscale.laws.powerlaw import frontier
from slmscale.report import style
from slmscale.report.arms import Arm, row_at
from slmscale.report.figures import size_label
from slmscale.report.numbers import num
from slmscale.report.style import plt


def _point_label(row: dict, budgets: int) -> str:
    name = row["model_size"] or size_label(row["params"])
    text = f"{name}\n({size_label(row['params'])})" if row["model_size"] else name
    return text + (f"\nD {num(row['tokens'], 3)}" if budgets > 1 else "")


def fig3_data_ablation(arms: list[Arm], rows: list[dict]):
    """Accuracy per (size, budget) and corpus: bars, binomial error bars, chance."""
    if not rows:
        return None
    metrics = sorted({m for r in rows for m in r["metrics"]})
    if not metrics:
        return None
    keys = sorted({(r["params"], r["tokens"]) for r in rows})
    budgets = len({k[1] for k in keys})
    labels = [a.label for a in arms]
    width = 0.8 / len(labels)
    x = np.arange(len(keys))
    fig, axes = style.panels(len(metrics))
    for ax, m in zip(axes, metrics, strict=True):
        for j, label in enumerate(labels):
            vals, lo, hi = [], [], []
            for k in keys:
                v = row_at(rows, label, k)["metrics"].get(m) or {}
                acc, ci = v.get("acc", np.nan), v.get("ci95")
                vals.append(acc)
                lo.append(acc - ci[0] if ci else 0.0)
                hi.append(ci[1] - acc if ci else 0.0)
            ax.bar(
                x + (j - (len(labels) - 1) / 2) * width, vals, width, yerr=[lo, hi],
                capsize=2, label=label, color=plt.get_cmap("tab10")(j),
                error_kw={"lw": 0.8},
            )  # fmt: skip
        style.chance_line(ax, arms[0].chance(m))
        ax.set_xticks(x, [_point_label(row_at(rows, labels[0], k), budgets) for k in keys])
        ax.tick_params(axis="x", labelsize=7)
        flat = [a.label for a in arms if a.at_chance(m)]
        ax.set(ylabel="accuracy", ylim=(min(0.3, _low(rows, m)), 1.0))
        ax.set_title(m + (f" (at chance in {', '.join(flat)}: no claim)" if flat else ""),
                     fontsize=8 if flat else None)  # fmt: skip
    fig.suptitle("Figure 3: data ablation (same sizes and token budgets; bars: 95% binomial)")
    style.figure_legend(fig, axes)
    return fig


def _low(rows: list[dict], m: str) -> float:
    lows = [
        (r["metrics"][m]["ci95"] or (r["metrics"][m]["acc"],))[0] for r in rows if m in r["metrics"]
    ]
    return max(0.0, min(lows) - 0.05) if lows else 0.3


def fig5_tokenizer_envelopes(arms: list[Arm]):
    """Loss envelope and downstream envelopes against compute per tokenizer (arm)."""
    if len(arms) < 2:
        return None
    metrics = sorted({m for a in arms for m, y in a.table.metrics.items() if np.isfinite(y).any()})
    fig, axes = style.panels(1 + len(metrics))
    for i, arm in enumerate(arms):
        col = plt.get_cmap("tab10")(i)
        label = f"{arm.tokenizer} ({arm.label})" if arm.label != arm.tokenizer else arm.label
        if len(arm.C):
            axes[0].scatter(arm.C, arm.L, s=4, color=col, alpha=0.25)
            f = frontier(arm.C, arm.L)
            order = np.argsort(arm.C[f])
            axes[0].plot(arm.C[f][order], arm.L[f][order], color=col, label=label)
        for ax, m in zip(axes[1:], metrics, strict=True):
            _metric_envelope(ax, arm, m, col, label)
    axes[0].set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel="test loss",
                title="loss envelope (loss per token of each tokenizer)")  # fmt: skip
    style.plain_log_ticks(axes[0])
    for ax, m in zip(axes[1:], metrics, strict=True):
        style.chance_line(ax, arms[0].chance(m))
        flat = [a.tokenizer or a.label for a in arms if a.at_chance(m)]
        title = f"{m} envelope" + (f" (at chance: {', '.join(flat)})" if flat else "")
        ax.set(xscale="log", xlabel="compute C (FLOPs)", ylabel=m)
        ax.set_title(title, fontsize=8 if flat else None)
    fig.suptitle("Figure 5: tokenizers compared (lines: envelopes; none where at chance)")
    style.figure_legend(fig, axes, ncol=3)
    return fig


def _metric_envelope(ax, arm: Arm, m: str, col, label: str) -> None:
    y = arm.table.metrics.get(m)
    if y is None or not np.isfinite(y).any():
        return
    ok = np.isfinite(y)
    C = arm.table.flops[ok]
    ax.scatter(C, y[ok], s=8, color=col, alpha=0.4)
    if arm.at_chance(m) is False:
        f = frontier(C, y[ok], maximize=True)
        order = np.argsort(C[f])
        ax.plot(C[f][order], y[ok][f][order], color=col, label=label)
