"""Figures of the report from the main study: the paper's Figures 1, 2 and 4, the Eq. 4 fit per
model size, the loss envelope per tokenizer, the residuals and the R* profile.

Each `fig_*` takes a `Study` and returns a matplotlib Figure (or None when there is nothing to
draw); `save_all` writes them (slmscale.report.style: widths, plain axes, legends off the data,
chance lines).  Numbers in titles are written with their verdicts (slmscale.report.numbers).
The ablations' Figures 3 and 5 are in slmscale.report.ablation_figures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slmscale.laws.powerlaw import envelope_law, frontier
from slmscale.laws.study import Study
from slmscale.report import style
from slmscale.report.intervals import slope_interval
from slmscale.report.numbers import num, verdict, with_interval
from slmscale.report.style import plt


def _sizes(t) -> tuple:
    """The runs' model sizes, a colour per size, and each size's name (see `_names`)."""
    sizes = np.unique(t.N)
    cmap = plt.get_cmap("viridis")
    return sizes, {s: cmap(i / max(len(sizes) - 1, 1)) for i, s in enumerate(sizes)}, _names(t)


def size_label(n: float, names: dict | None = None) -> str:
    """The model's size name when the runs give one (e.g. `demo-27k`), else N in M/B/k."""
    if names and names.get(n):
        return names[n]
    if n >= 1e9:
        return f"{n / 1e9:.3g}B"
    return f"{n / 1e6:.3g}M" if n >= 1e6 else f"{n / 1e3:.3g}k"


def _names(t) -> dict:
    """N -> the model_size name of its runs (only when every run of that N agrees)."""
    out: dict = {}
    for n, name in zip(t.N, t.model_size, strict=True):
        out.setdefault(n, set()).add(name)
    return {n: next(iter(v)) for n, v in out.items() if len(v) == 1 and next(iter(v))}


def _exponent_text(doc: dict, key: str, value, digits: int = 3) -> str:
    ci = (doc.get("ci95") or {}).get(key)
    return with_interval(value, ci, verdict(doc, key), digits)


def _other_count(study: Study):
    """(name, C of the envelope's points) under the FLOP count the fit did not use, when every
    run has both (the full count: 6ND plus attention and the output layer); else None."""
    t, env = study.single, study.envelope
    full = getattr(t, "flops_full", None)
    if full is None or not len(t) or not np.isfinite(full).all():
        return None
    six = 6.0 * t.N * t.D
    used = study.doc.get("flops_definition") or "6nd"
    ratio = dict(zip(t.run_id, six / full if used == "full" else full / six, strict=True))
    scale = np.array([ratio.get(str(r), np.nan) for r in env["run_id"]])
    return ("6ND" if used == "full" else "full count"), env["C"] * scale


def _loss_panel(ax, study: Study, C, color, n_of, law, title: str) -> None:
    env = study.envelope
    for rid in sorted(set(env["run_id"])):
        m = env["run_id"] == rid
        order = np.argsort(C[m])
        ax.plot(C[m][order], env["L"][m][order], color=color[n_of[rid]], lw=0.8, alpha=0.7)
    if law is not None:
        f = frontier(C, env["L"])
        ax.scatter(C[f], env["L"][f], s=10, color="black", zorder=3, label="envelope")
        c = np.geomspace(C.min(), C.max(), 50)
        ax.plot(c, law(c), "k--", label="power law of the envelope")
    ax.set(xscale="log", yscale="log", ylabel="test loss", title=title)
    style.plain_log_ticks(ax)


def fig1_loss_envelope(study: Study):
    """Figure 1; with a second panel under the other FLOP count when the runs carry both."""
    env, t = study.envelope, study.single
    n_of = dict(zip(t.run_id, t.N, strict=True))
    sizes, color, names = _sizes(t)
    used = "full count" if study.doc.get("flops_definition") == "full" else "6ND"
    other = _other_count(study)
    fig, axes = style.panels(2) if other else plt.subplots(figsize=(6.4, 4))
    axes = axes if other else [axes]
    law = env["law"]
    title = f"{used} (the fit's)"
    if law:
        g = _exponent_text(study.doc, "envelope_gamma", law.gamma)
        title += f"\nL = {num(law.k, 3)} C^gamma, gamma = {g}"
    _loss_panel(axes[0], study, env["C"], color, n_of, law, title)
    axes[0].set_xlabel(f"compute C (FLOPs, {used})")
    if other:
        name, C = other
        _, law2 = envelope_law(C, env["L"])
        _loss_panel(
            axes[1],
            study,
            C,
            color,
            n_of,
            law2,
            f"{name}\n(exponent fitted with --flops {'6nd' if name == '6ND' else 'full'})",
        )
        axes[1].set_xlabel(f"compute C (FLOPs, {name})")  # fmt: skip
    for s in sizes:
        axes[0].plot([], [], color=color[s], label=size_label(s, names))
    fig.suptitle(f"Figure 1: loss envelope ({env['basis']})")
    if other:
        style.figure_legend(fig, axes, ncol=6)
    else:
        style.legend_beside(axes[0])
    return fig


def _gamma_line(ax, C, y, frontier, gq, color, label: str) -> np.ndarray:
    """Draw gamma_q's line (raw accuracy) over the pre-saturation envelope, as Table 3 fits it.

    The envelope in order of compute is `frontier`; its last `n_saturated` points are the
    plateau the rule left out: returned, so the caller draws them hollow (not as envelope dots).
    """
    if not gq or not len(frontier):
        return np.array([], int)
    n_sat = int(gq["raw"]["n_saturated"][0])
    line = frontier[: len(frontier) - n_sat]
    sat = frontier[len(frontier) - n_sat :] if n_sat else np.array([], int)
    if len(line) >= 2:
        slope, icpt = np.polyfit(np.log(C[line]), np.log(y[line]), 1)
        c = np.geomspace(C[line].min(), C[line].max(), 50)
        ax.plot(c, np.exp(icpt) * c**slope, color=color, ls="--", label=label)
    return sat


def _envelope_dots(ax, C, y, frontier, sat, color, label: str, plateau_label: str) -> None:
    """Envelope points filled, plateau points (left out of the line) hollow, as the legend says."""
    on_line = np.setdiff1d(frontier, sat)
    ax.scatter(C[on_line], y[on_line], s=14, color=color, zorder=3, label=label)
    if len(sat):
        ax.scatter(
            C[sat], y[sat], s=26, facecolors="none", edgecolors=color, zorder=3,
            label=plateau_label,
        )  # fmt: skip


def _downstream_panel(ax, study: Study, m: str, d: dict) -> None:
    doc = study.doc
    chance = d.get("chance", 0.5)
    ax.scatter(d["C"], d["y"], s=8, alpha=0.4, color="tab:blue", label="speech runs (ours)")
    if d.get("at_chance"):
        test = ((doc.get("downstream") or {}).get(m) or {}).get("chance_test") or {}
        p = f", p = {num(test['p_value'], 2)}" if test.get("p_value") is not None else ""
        ax.set_title(f"{m}: at chance{p}; no gamma_q, no envelope line", fontsize=8)
    else:
        f = d["frontier"]
        sat = _gamma_line(ax, d["C"], d["y"], f, d.get("gamma_q"), "black", "gamma_q line (speech)")
        _envelope_dots(ax, d["C"], d["y"], f, sat, "black", "envelope", "plateau (left out)")
        g = (d.get("gamma_q") or {}).get("raw", {}).get("gamma")
        g_text = _exponent_text(doc, f"gamma_q.{m}", float(g[0])) if g is not None else "-"
        ax.set_title(f"{m}: gamma_q = {g_text}", fontsize=8)
    ref = study.reference.get(m)
    if ref:
        ax.scatter(ref["C"], ref["y"], s=6, color="tab:red", alpha=0.3, label="text reference")
        if not ref.get("at_chance"):
            f = ref["frontier"]
            sat = _gamma_line(
                ax, ref["C"], ref["y"], f, ref.get("gamma_q"), "tab:red", "gamma_q line (text)"
            )
            if len(sat):
                ax.scatter(ref["C"][sat], ref["y"][sat], s=22, facecolors="none",
                           edgecolors="tab:red", label="text plateau (left out)")  # fmt: skip
    style.chance_line(ax, chance)
    ax.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel=m)
    style.plain_log_ticks(ax)


def fig2_downstream_envelope(study: Study):
    metrics = sorted(study.downstream)
    if not metrics:
        return None
    fig, axes = style.panels(len(metrics))
    for ax, m in zip(axes, metrics, strict=True):
        _downstream_panel(ax, study, m, study.downstream[m])
    fig.suptitle("Figure 2: downstream envelope against compute (lines: Table 3's gamma_q)")
    style.figure_legend(fig, axes)
    return fig


def fig3_law_fit(study: Study):
    t, p = study.single, study.chinchilla.params
    sizes, color, names = _sizes(t)
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for s in sizes:
        m = t.N == s
        ax.scatter(t.D[m], t.loss[m], color=color[s], s=14, label=size_label(s, names))
        d = np.geomspace(t.D[m].min(), t.D[m].max(), 40)
        ax.plot(d, p.predict(s, d), color=color[s], lw=1)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="training tokens D",
        ylabel="final test loss",
        title="Eq. 4 fit: observed (dots) and L_hat(N, D) (lines)",
    )
    style.plain_log_ticks(ax)
    style.legend_beside(ax)
    return fig


def _slope_text(study: Study, m: str, rel) -> str:
    ci = slope_interval(study.doc, m)
    return f"slope {num(rel.slope, 3)}" + (f" [{num(ci[0], 3)}, {num(ci[1], 3)}]" if ci else "")


def fig4_loss_vs_metric(study: Study):
    metrics = sorted(study.downstream)
    if not metrics:
        return None
    fig, axes = style.panels(len(metrics))
    for ax, m in zip(axes, metrics, strict=True):
        d = study.downstream[m]
        ax.scatter(d["loss"], d["y"], s=10, alpha=0.6, color="tab:blue", label="runs")
        rel = d["linear"]
        if d.get("at_chance"):
            ax.set_title(f"{m}: at chance, no line", fontsize=8)
        elif rel:
            x = np.linspace(rel.loss_min, rel.loss_max, 20)
            ax.plot(x, rel(x), "k-", label="linear relation (unsaturated runs)")
            if rel.plateau is not None:
                ax.axvline(rel.loss_min, color="gray", ls="-.", lw=0.8, label="saturation")
            title = (
                f"{m}: {_slope_text(study, m, rel)}, r = {rel.pearson_r:.3f} ({rel.n_points} runs)"
            )
            ax.set_title(title, fontsize=8)
        style.chance_line(ax, d.get("chance", 0.5))
        ax.set(xlabel="test loss", ylabel=m)
    fig.suptitle("Figure 4: downstream metric against test loss")
    style.figure_legend(fig, axes)
    return fig


def fig5_tokenizers(study: Study):
    groups = study.tokenizers or {"(one tokenizer)": {"envelope": study.envelope}}
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for i, (name, g) in enumerate(sorted(groups.items())):
        env, col = g["envelope"], plt.get_cmap("tab10")(i)
        ax.scatter(env["C"], env["L"], s=4, color=col, alpha=0.3)
        if env["law"]:
            c = np.geomspace(env["C"].min(), env["C"].max(), 50)
            ax.plot(c, env["law"](c), color=col, label=f"{name}: gamma = {env['law'].gamma:.3f}")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="compute C (FLOPs)",
        ylabel="test loss",
        title="Figure 5: loss envelope per tokenizer",
    )
    style.plain_log_ticks(ax)
    style.legend_beside(ax)
    return fig


def fig_residuals(study: Study):
    t, p = study.single, study.chinchilla.params
    res = np.log(t.loss) - np.log(p.predict(t.N, t.D))
    sizes, color, names = _sizes(t)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for s in sizes:
        m = t.N == s
        ax.scatter(t.D[m] / t.N[m], res[m], color=color[s], s=12, label=size_label(s, names))
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xscale="log", xlabel="D / N", ylabel="log L - log L_hat", title="Eq. 4 residuals")
    style.legend_beside(ax)
    return fig


def fig_rstar_profile(study: Study):
    dc = study.data_constrained
    if dc is None:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4))
    g = dc.grid_log10
    z = np.log10(dc.surface / max(dc.surface.min(), 1e-300))
    cs = ax.contourf(
        g, g, z.T, levels=np.linspace(0, min(z.max(), 2.0), 21), cmap="magma_r", extend="max"
    )
    fig.colorbar(cs, ax=ax, label="log10(objective / minimum)")
    ax.plot(np.log10(dc.R_star_N), np.log10(dc.R_star_D), "c*", ms=12)
    ax.set(
        xlabel="log10 R*_N",
        ylabel="log10 R*_D",
        title="Eq. 7/8 objective profile (R*); star: the fit",
    )
    return fig


FIGURES = {
    "fig1_loss_envelope": fig1_loss_envelope,
    "fig2_downstream_envelope": fig2_downstream_envelope,
    "fig3_law_fit": fig3_law_fit,
    "fig4_loss_vs_metric": fig4_loss_vs_metric,
    "fig5_tokenizers": fig5_tokenizers,
    "fig_residuals": fig_residuals,
    "fig_rstar_profile": fig_rstar_profile,
}


def save_all(study: Study, out_dir: Path) -> list[str]:
    """Write every figure that has data as PNG and SVG; returns the names written."""
    names = []
    for name, make in FIGURES.items():
        fig = make(study)
        if fig is None:
            continue
        style.save(fig, out_dir, name)
        names.append(name)
    return names
