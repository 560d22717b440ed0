"""What a reader sees in the report's figures, checked on the matplotlib objects (no browser):
legends never on the data, plain-number accuracy and loss axes, plateau points hollow as the
legend says, chance drawn, no line for a benchmark at chance, every figure readable at the
report's width."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.patches import Rectangle

from slmscale.laws.chinchilla import ChinchillaParams
from slmscale.laws.study import run_study
from slmscale.laws.synthetic import synthetic_runs
from slmscale.laws.table import validate_runs
from slmscale.paper import SPEECH_LAW, UNIGRAM_LAW
from slmscale.report import figures, style
from slmscale.report.ablation_figures import fig3_data_ablation, fig5_tokenizer_envelopes
from slmscale.report.arms import (
    arms_of_study,
    arms_without_fit,
    data_ablation_rows,
    data_arms,
    tokenizer_arms,
)

SIZES = (20.4e6, 54e6, 84.9e6, 154.2e6, 308e6)


def _runs(law, seed=0, tokenizer="hubert25hz-k500", prefix="run"):
    runs, curves = synthetic_runs(
        ChinchillaParams.from_dict(law), sizes=SIZES, ratios=(2, 4, 8, 16, 32), noise=0.004,
        seed=seed, tokenizer=tokenizer, prefix=prefix,
    )  # fmt: skip
    C = 6.0 * np.array(runs["params"]) * np.array(runs["tokens"])
    # sBLIMP rises with compute, then saturates at 0.9 (an envelope with a plateau); StoryCloze
    # stays at chance; model size names as the grid logs them.
    runs["sblimp_acc"] = np.minimum(0.55 + 0.09 * np.log10(C / C.min()), 0.9).tolist()
    runs["story_cloze_acc"] = (0.5 + np.random.default_rng(seed).normal(0, 0.004, C.size)).tolist()
    runs["model_size"] = [f"m{int(n / 1e6)}" for n in runs["params"]]
    return runs, curves


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    style.plt.close("all")


@pytest.fixture(scope="module")
def study():
    runs, curves = _runs(SPEECH_LAW)
    table, excluded = validate_runs(runs, "r")
    return run_study(table, excluded, source={"label": "main"}, curves=curves, n_bootstrap=20)


@pytest.fixture(scope="module")
def arms(study):
    uni, ucurves = _runs(UNIGRAM_LAW, seed=1, tokenizer="unigram5000", prefix="uni")
    t, ex = validate_runs(uni, "uni")
    other = run_study(t, ex, source={"label": "uni"}, curves=ucurves, n_bootstrap=20)
    main_runs, _ = _runs(SPEECH_LAW)
    book = {k: v[:5] for k, v in main_runs.items()}  # the smallest size's five budgets
    book["run_id"] = [f"book{i}" for i in range(5)]
    book["sblimp_acc"] = [0.6] * 5
    btable, _ = validate_runs(book, "book")
    out = arms_of_study("main", study, True)
    out[0].main = True
    out += arms_without_fit("book", btable, "5 runs of one size") + arms_of_study(
        "uni", other, True
    )
    for a in out:
        a.n_items = {r: {"sblimp_acc": 400, "story_cloze_acc": 200} for r in a.table.run_id}
    return out


def all_figures(study, arms):
    made = {name: make(study) for name, make in figures.FIGURES.items()}
    rows = data_ablation_rows(data_arms(arms))
    made["fig3_data_ablation"] = fig3_data_ablation(data_arms(arms), rows)
    made["fig5_tokenizer_envelopes"] = fig5_tokenizer_envelopes(tokenizer_arms(arms))
    return {k: v for k, v in made.items() if v is not None}


def _data_points(fig) -> np.ndarray:
    """Display coordinates of every drawn data point, line vertex and bar top in `fig`."""
    pts = []
    for ax in fig.axes:
        for c in ax.collections:
            if isinstance(c, PathCollection) and len(c.get_offsets()):
                pts.append(c.get_offset_transform().transform(c.get_offsets()))
        for line in ax.lines:
            xy = np.column_stack(line.get_data()).astype(float)
            if line.get_label() == "chance" or len(xy) < 1:
                continue  # an axhline spans the axes in axes coordinates
            pts.append(line.get_transform().transform(xy))
        for p in ax.patches:
            if isinstance(p, Rectangle) and p.get_height() > 0:
                x, y, w, h = p.get_x(), p.get_y(), p.get_width(), p.get_height()
                pts.append(ax.transData.transform([(x + w / 2, y + h)]))
    pts = np.concatenate(pts) if pts else np.zeros((0, 2))
    return pts[np.isfinite(pts).all(axis=1)]


def test_legends_never_cover_data(study, arms):
    figs = all_figures(study, arms)
    assert {"fig3_law_fit", "fig_residuals", "fig3_data_ablation"} <= set(figs)
    for name, fig in figs.items():
        renderer = fig.canvas.get_renderer()
        fig.canvas.draw()
        legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
        points = _data_points(fig)
        assert len(points), name
        for leg in legends:
            box = leg.get_window_extent(renderer)
            inside = (
                (points[:, 0] >= box.x0) & (points[:, 0] <= box.x1)
                & (points[:, 1] >= box.y0) & (points[:, 1] <= box.y1)
            )  # fmt: skip
            assert not inside.any(), f"{name}: legend covers {int(inside.sum())} data points"


def test_accuracy_and_loss_axes_read_as_plain_numbers(study, arms):
    for name, fig in all_figures(study, arms).items():
        fig.canvas.draw()
        for ax in fig.axes:
            labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
            assert labels, (name, ax.get_ylabel())
            assert not any("$" in t or "10^" in t for t in labels), (name, labels)


def test_plateau_points_are_hollow_and_not_envelope_dots(study):
    assert study.downstream["sblimp_acc"]["gamma_q"]["raw"]["n_saturated"][0] > 0
    fig = figures.fig2_downstream_envelope(study)
    ax = next(a for a in fig.axes if a.get_ylabel() == "sblimp_acc")
    by_label = {c.get_label(): c for c in ax.collections if isinstance(c, PathCollection)}
    plateau, dots = by_label["plateau (left out)"], by_label["envelope"]
    assert (plateau.get_facecolors()[:, 3] == 0).all()  # hollow, as in the legend
    assert (dots.get_facecolors()[:, 3] > 0).all()
    shared = {tuple(p) for p in plateau.get_offsets()} & {tuple(p) for p in dots.get_offsets()}
    assert not shared  # a plateau point is not also drawn as a filled envelope dot


def test_chance_drawn_and_no_line_for_a_benchmark_at_chance(study):
    assert study.downstream["story_cloze_acc"]["at_chance"]
    for make in (figures.fig2_downstream_envelope, figures.fig4_loss_vs_metric):
        fig = make(study)
        for ax in fig.axes:
            chance = [ln for ln in ax.lines if ln.get_label() == "chance"]
            assert chance and chance[0].get_ydata()[0] == pytest.approx(0.5)
            if ax.get_ylabel() == "story_cloze_acc":
                assert [ln.get_label() for ln in ax.lines] == ["chance"]
                assert "at chance" in ax.get_title()


def test_figures_fit_the_report_width(study, arms, tmp_path):
    import matplotlib.image as mpimg

    for name, fig in all_figures(study, arms).items():
        style.save(fig, tmp_path, name)
        h, w = mpimg.imread(tmp_path / f"{name}.png").shape[:2]
        assert w <= 100 * style.MAX_WIDTH_IN, (name, w)  # shown 1:1 in a 62em report
        assert min(w, h) >= 300, (name, w, h)


def test_figure_1_drawn_with_both_flop_counts_when_the_runs_carry_both(study):
    import copy

    two = copy.copy(study)
    two.single = copy.copy(study.single)
    t = two.single
    t.flops_full = 6.0 * t.N * t.D * (1.0 + 2e6 / t.N)  # attention: relatively more when small
    fig = figures.fig1_loss_envelope(two)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_xlabel() for ax in axes] == [
        "compute C (FLOPs, 6ND)",
        "compute C (FLOPs, full count)",
    ]
    x6 = np.concatenate([ln.get_xdata() for ln in axes[0].lines[: len(t)]])
    xf = np.concatenate([ln.get_xdata() for ln in axes[1].lines[: len(t)]])
    assert xf.min() == pytest.approx(x6.min() * (1 + 2e6 / t.N.min()))  # shifted per run
    assert figures.fig1_loss_envelope(study).axes[0].get_xlabel() == "compute C (FLOPs, 6ND)"
