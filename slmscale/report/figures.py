"""Figures of the report: analogues of the paper's Figures 1-5, plus residuals and the R* profile.

Each `fig_*` takes a `Study` and returns a matplotlib Figure (or None when there is nothing to
draw); `save_all` writes PNG and SVG with fixed metadata so reruns give the same files.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from slmscale.laws.study import Study  # noqa: E402

plt.rcParams.update({"svg.hashsalt": "slmscale", "figure.dpi": 100, "font.size": 9})


def _sizes_colors(N):
    sizes = np.unique(N)
    cmap = plt.get_cmap("viridis")
    return sizes, {s: cmap(i / max(len(sizes) - 1, 1)) for i, s in enumerate(sizes)}


def _size_label(n: float, names: dict | None = None) -> str:
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


def fig1_loss_envelope(study: Study):
    env, t = study.envelope, study.single
    n_of = dict(zip(t.run_id, t.N, strict=True))
    sizes, color = _sizes_colors(t.N)
    fig, ax = plt.subplots(figsize=(6, 4))
    for rid in sorted(set(env["run_id"])):
        m = env["run_id"] == rid
        order = np.argsort(env["C"][m])
        ax.plot(env["C"][m][order], env["L"][m][order], color=color[n_of[rid]], lw=0.8, alpha=0.7)
    names = _names(t)
    for s in sizes:
        ax.plot([], [], color=color[s], label=_size_label(s, names))
    f = env["frontier"]
    ax.scatter(env["C"][f], env["L"][f], s=10, color="black", zorder=3, label="envelope")
    if env["law"]:
        c = np.geomspace(env["C"].min(), env["C"].max(), 50)
        ax.plot(c, env["law"](c), "k--", label=f"L = {env['law'].k:.3g} C^{env['law'].gamma:.3f}")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="compute C (FLOPs)",
        ylabel="test loss",
        title=f"Figure 1: loss envelope ({env['basis']})",
    )
    ax.legend(fontsize=7)
    return fig


def _metric_panels(study: Study):
    """One panel per downstream metric: (fig, [(ax, metric, data)]), or None without metrics."""
    metrics = sorted(study.downstream)
    if not metrics:
        return None
    cols = 1 if len(metrics) == 1 else 2
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[len(metrics) :]:
        ax.set_visible(False)
    return fig, [(ax, m, study.downstream[m]) for ax, m in zip(flat, metrics, strict=False)]


def _gamma_line(ax, C, y, frontier, gq, color, label: str) -> None:
    """Draw gamma_q's line (raw accuracy) over the pre-saturation envelope, as Table 3 fits it.

    The envelope in order of compute is `frontier`; its last `n_saturated` points are the
    plateau the rule left out (drawn hollow).
    """
    if not gq or not len(frontier):
        return
    n_sat = int(gq["raw"]["n_saturated"][0])
    line = frontier[: len(frontier) - n_sat]
    if len(line) < 2:
        return
    slope, icpt = np.polyfit(np.log(C[line]), np.log(y[line]), 1)
    c = np.geomspace(C[line].min(), C[line].max(), 50)
    ax.plot(c, np.exp(icpt) * c**slope, color=color, ls="--", label=f"{label} = {slope:.3f}")
    if n_sat:
        sat = frontier[len(frontier) - n_sat :]
        ax.scatter(
            C[sat], y[sat], s=22, facecolors="none", edgecolors=color, label="plateau (left out)"
        )


def fig2_downstream_envelope(study: Study):
    panels = _metric_panels(study)
    if panels is None:
        return None
    fig, pairs = panels
    for ax, m, d in pairs:
        ax.scatter(d["C"], d["y"], s=8, alpha=0.5, label="speech runs (ours)")
        f = d["frontier"]
        ax.scatter(d["C"][f], d["y"][f], s=14, color="black", label="envelope")
        if d.get("at_chance"):
            ax.set_title(f"{m}: never beats chance, no gamma_q", fontsize=8)
        _gamma_line(ax, d["C"], d["y"], f, d.get("gamma_q"), "black", "gamma_q (raw)")
        ref = study.reference.get(m)
        if ref:
            ax.scatter(ref["C"], ref["y"], s=6, color="tab:red", alpha=0.3, label="text reference")
            gq = None if ref.get("at_chance") else ref.get("gamma_q")
            _gamma_line(
                ax, ref["C"], ref["y"], ref["frontier"], gq, "tab:red", "text gamma_q (raw)"
            )
        ax.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel=m)
        ax.legend(fontsize=6)
    fig.suptitle("Figure 2: downstream envelope against compute (lines: Table 3's gamma_q)")
    fig.tight_layout()
    return fig


def fig3_law_fit(study: Study):
    t, p = study.single, study.chinchilla.params
    sizes, color = _sizes_colors(t.N)
    names = _names(t)
    fig, ax = plt.subplots(figsize=(6, 4))
    for s in sizes:
        m = t.N == s
        ax.scatter(t.D[m], t.loss[m], color=color[s], s=14, label=_size_label(s, names))
        d = np.geomspace(t.D[m].min(), t.D[m].max(), 40)
        ax.plot(d, p.predict(s, d), color=color[s], lw=1)
    ax.set(
        xscale="log",
        xlabel="training tokens D",
        ylabel="final test loss",
        title="Eq. 4 fit: observed (dots) and L_hat(N, D) (lines)",
    )
    ax.legend(fontsize=7)
    return fig


def fig4_loss_vs_metric(study: Study):
    panels = _metric_panels(study)
    if panels is None:
        return None
    fig, pairs = panels
    for ax, m, d in pairs:
        ax.scatter(d["loss"], d["y"], s=10, alpha=0.7)
        rel = d["linear"]
        if rel:
            x = np.linspace(rel.loss_min, rel.loss_max, 20)
            ax.plot(x, rel(x), "k-", label=f"r = {rel.pearson_r:.3f} ({rel.n_points} runs)")
            if rel.plateau is not None:
                ax.axvline(rel.loss_min, color="gray", ls=":", label="saturation")
            ax.legend(fontsize=7)
        ax.set(xlabel="test loss", ylabel=m)
    fig.suptitle("Figure 4: downstream metric against test loss")
    fig.tight_layout()
    return fig


def fig5_tokenizers(study: Study):
    groups = study.tokenizers or {"(one tokenizer)": {"envelope": study.envelope}}
    fig, ax = plt.subplots(figsize=(6, 4))
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
        title="Figure 5: tokenizers compared (loss envelopes)",
    )
    ax.legend(fontsize=7)
    return fig


def fig_residuals(study: Study):
    t, p = study.single, study.chinchilla.params
    res = np.log(t.loss) - np.log(p.predict(t.N, t.D))
    sizes, color = _sizes_colors(t.N)
    names = _names(t)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for s in sizes:
        m = t.N == s
        ax.scatter(t.D[m] / t.N[m], res[m], color=color[s], s=12, label=_size_label(s, names))
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xscale="log", xlabel="D / N", ylabel="log L - log L_hat", title="Eq. 4 residuals")
    ax.legend(fontsize=7)
    return fig


def fig_rstar_profile(study: Study):
    dc = study.data_constrained
    if dc is None:
        return None
    fig, ax = plt.subplots(figsize=(5, 4))
    g = dc.grid_log10
    z = np.log10(dc.surface / max(dc.surface.min(), 1e-300))
    cs = ax.contourf(
        g, g, z.T, levels=np.linspace(0, min(z.max(), 2.0), 21), cmap="magma_r", extend="max"
    )
    fig.colorbar(cs, ax=ax, label="log10(objective / minimum)")
    ax.plot(np.log10(dc.R_star_N), np.log10(dc.R_star_D), "c*", ms=12, label="fit")
    ax.set(xlabel="log10 R*_N", ylabel="log10 R*_D", title="Eq. 7/8 objective profile (R*)")
    ax.legend(fontsize=7)
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
    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for name, make in FIGURES.items():
        fig = make(study)
        if fig is None:
            continue
        fig.tight_layout()  # no clipped axis labels or titles
        fig.savefig(out_dir / f"{name}.png", metadata={"Software": None})
        fig.savefig(out_dir / f"{name}.svg", metadata={"Date": None, "Creator": None})
        plt.close(fig)
        names.append(name)
    return names


# ---- the paper's ablations (drawn from plain data: slmscale.demo.ablations builds it) ----------


def save_figure(fig, out_dir: Path, name: str) -> None:
    """One figure as PNG and SVG with the same fixed metadata as `save_all`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_dir / f"{name}.png", metadata={"Software": None})
    fig.savefig(out_dir / f"{name}.svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)


def fig3_data_ablation(rows: list[dict]):
    """Paper Figure 3: cloze accuracy by model size, one bar per training corpus.

    `rows`: {corpus, model_size, params, topic_cloze_acc, story_cloze_acc} per (size, corpus).
    """
    metrics = [("topic_cloze_acc", "TopicCloze"), ("story_cloze_acc", "StoryCloze")]
    corpora = sorted({r["corpus"] for r in rows}, key=lambda c: (c != "stories", c))
    sizes = sorted({(r["params"], r["model_size"]) for r in rows})
    fig, axes = plt.subplots(1, len(metrics), figsize=(9, 3.5), squeeze=False)
    width = 0.8 / max(len(corpora), 1)
    x = np.arange(len(sizes))
    for ax, (m, label) in zip(axes[0], metrics, strict=True):
        for j, corpus in enumerate(corpora):
            by = {r["model_size"]: r.get(m, np.nan) for r in rows if r["corpus"] == corpus}
            ax.bar(x + (j - (len(corpora) - 1) / 2) * width, [by.get(s, np.nan) for _, s in sizes],
                   width, label=corpus, color=plt.get_cmap("tab10")(j))  # fmt: skip
        ax.axhline(0.5, color="grey", ls=":", lw=0.8, label="chance")
        ax.set_xticks(x, [f"{s}\n({_size_label(n)})" for n, s in sizes], fontsize=7)
        ax.set(ylabel="accuracy", title=label, ylim=(0.3, 1.0))
        ax.legend(fontsize=7)
    fig.suptitle("Figure 3: data ablation, equal tokens of each corpus")
    fig.tight_layout()
    return fig


def fig5_tokenizer_envelopes(groups: dict):
    """Paper Figure 5: loss envelope and downstream envelopes against compute per tokenizer.

    `groups`: tokenizer -> {C, L (eval points), run_C, metrics: name -> final value per run}.
    """
    from slmscale.laws.powerlaw import frontier

    metrics = sorted({m for g in groups.values() for m in g["metrics"]})
    fig, axes = plt.subplots(1, 1 + len(metrics), figsize=(3.3 * (1 + len(metrics)), 3.3))
    axes = np.atleast_1d(axes)
    for i, (name, g) in enumerate(sorted(groups.items())):
        col = plt.get_cmap("tab10")(i)
        if len(g["C"]):
            axes[0].scatter(g["C"], g["L"], s=4, color=col, alpha=0.25)
            f = frontier(g["C"], g["L"])
            order = np.argsort(g["C"][f])
            axes[0].plot(g["C"][f][order], g["L"][f][order], color=col, label=name)
        for ax, m in zip(axes[1:], metrics, strict=True):
            y, C = g["metrics"].get(m), g["run_C"]
            if y is None or not np.isfinite(y).any():
                continue
            ok = np.isfinite(y)
            ax.scatter(C[ok], y[ok], s=8, color=col, alpha=0.4)
            f = frontier(C[ok], y[ok], maximize=True)
            order = np.argsort(C[ok][f])
            ax.plot(C[ok][f][order], y[ok][f][order], color=col, label=name)
    axes[0].set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel="test loss",
                title="loss envelope")  # fmt: skip
    for ax, m in zip(axes[1:], metrics, strict=True):
        ax.axhline(0.5, color="grey", ls=":", lw=0.8)
        ax.set(xscale="log", xlabel="compute C (FLOPs)", ylabel=m, title=f"{m} envelope")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle("Figure 5: k-means units against unigram-compressed units")
    fig.tight_layout()
    return fig
