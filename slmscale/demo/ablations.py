"""The paper's two ablations in the demo's report: Figure 3 (training data) and Figure 5
(tokenizer), drawn from the runs in the demo's MLflow store and added to the report directory.

- Figure 3, data ablation: models of a few sizes trained on an equal number of tokens of the
  "stories" corpus (the main grid's runs at that budget) and of the "audiobook" corpus (same
  language, sentences from independent stories: slmscale.demo.language.sample_passage), scored on
  TopicCloze and StoryCloze.  Paper: sTinyStories beats audiobooks at every size.
- Figure 5, tokenizer: the main grid's k-means units against a small grid on the same units
  compressed by `slmscale unigram`; Eq. 4 is fitted on each by `slmscale report` (Table 4 rows
  and the Figure 5 table); here the loss envelope and the downstream envelopes against compute
  for both tokenizations in one figure.  Paper: unigram's loss scales as well or better with
  compute, its downstream metrics worse (StoryCloze not at all).

The sections are inserted into report.md and report.html after `slmscale report` wrote them
(before the "Figure 4" and "Fit quality" headings), so the report stays one document.
Edge module: reads MLflow through slmscale.tracking; figures in slmscale.report.figures.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from slmscale.tracking.schema import M_TEST_LOSS

CLOZE = ("topic_cloze_acc", "story_cloze_acc")
METRICS = ("sblimp_acc", "swuggy_acc", "topic_cloze_acc", "story_cloze_acc")
PAPER_FIG3 = (
    "Paper (Figure 3): models trained on sTinyStories beat models trained on an equal number of "
    "audiobook tokens (LibriSpeech + LibriLight) on TopicCloze and StoryCloze at every size."
)
PAPER_FIG5 = (
    "Paper (Figure 5, Table 4 unigram row): on unigram-compressed units the loss scales as well "
    "or better with compute (Eq. 4: E 1.42, A 3.85, B 8.9, alpha 0.15, beta 0.16), but the "
    "downstream metrics scale worse; StoryCloze does not improve with compute."
)


def _runs(tracking_uri: str, experiment: str):
    from slmscale.tracking.store import runs_table

    df = runs_table(tracking_uri, [experiment])
    if len(df) == 0:
        return df
    return df[df["status"] == "FINISHED"].reset_index(drop=True)


def data_ablation_rows(tracking_uri: str, stories_exp: str, audiobook_exp: str) -> list[dict]:
    """One row per (model size, corpus): the audiobook runs and the stories runs of the same
    size and token budget (single epoch)."""
    book = _runs(tracking_uri, audiobook_exp)
    main = _runs(tracking_uri, stories_exp)
    rows = []
    for _, b in book.sort_values("params").iterrows():
        same = main[
            (main["params"] == b["params"])
            & (main["tokens"] == b["tokens"])
            & (main["epochs"] == 1)
            & (main["tokenizer"] == b["tokenizer"])
        ]
        if len(same) == 0:
            continue
        s = same.iloc[0]
        for corpus, r in (("stories", s), ("audiobook", b)):
            rows.append(
                {
                    "corpus": corpus,
                    "model_size": str(r["model_size"]),
                    "params": float(r["params"]),
                    "tokens": float(r["tokens"]),
                    "loss": float(r["loss"]),
                    **{m: float(r[m]) for m in METRICS if m in r and r[m] == r[m]},
                }
            )
    return rows


def _curves(tracking_uri: str, df) -> tuple[np.ndarray, np.ndarray]:
    """(C, test loss) at every eval point of the single-epoch runs of `df`."""
    from slmscale.tracking.store import metric_history

    C, L = [], []
    for _, r in df[df["epochs"] == 1].iterrows():
        for step, value in metric_history(tracking_uri, r["run_id"], M_TEST_LOSS):
            if step > 0:
                C.append(6.0 * r["params"] * step)
                L.append(value)
    return np.asarray(C, float), np.asarray(L, float)


def tokenizer_groups(tracking_uri: str, experiment: str) -> dict[str, dict]:
    """tokenizer -> {C, L (eval points), runs: C and final metrics of single-epoch runs}."""
    df = _runs(tracking_uri, experiment)
    out = {}
    for name in sorted(set(df["tokenizer"].dropna())):
        sub = df[(df["tokenizer"] == name) & (df["epochs"] == 1)]
        C, L = _curves(tracking_uri, sub)
        out[name] = {
            "C": C,
            "L": L,
            "run_C": sub["flops"].to_numpy(float),
            "metrics": {m: sub[m].to_numpy(float) for m in METRICS if m in sub},
        }
    return out


def _fig3_blocks(rows: list[dict], stories_exp: str, audiobook_exp: str) -> list:
    if not rows:
        return [
            ("h2", "Figure 3: data ablation (stories against audiobook)"),
            ("p", "Not run: this demo run left the ablations out (`slmscale demo --quick`)."),
        ]
    table = [
        [
            r["corpus"],
            r["model_size"],
            f"{r['params']:.3g}",
            f"{r['tokens']:.3g}",
            f"{r['loss']:.3f}",
            *(f"{r[m]:.3f}" if m in r else "-" for m in CLOZE),
        ]
        for r in rows
    ]
    by = {(r["model_size"], r["corpus"]): r for r in rows}
    sizes = sorted({r["model_size"] for r in rows}, key=lambda s: by[(s, "stories")]["params"])
    wins = {
        m: sum(by[(s, "stories")].get(m, 0) > by[(s, "audiobook")].get(m, 0) for s in sizes)
        for m in CLOZE
    }
    finding = "; ".join(
        f"{m.removesuffix('_acc')}: stories ahead at {wins[m]} of {len(sizes)} sizes"
        for m in CLOZE
    )
    return [
        ("h2", "Figure 3: data ablation (stories against audiobook)"),
        (
            "p",
            f"Models of {len(sizes)} sizes trained on an equal number of tokens of each corpus: "
            f"the stories runs are the main grid's ({stories_exp}), the audiobook runs are "
            f"experiment {audiobook_exp} (same language, each sentence from an independent "
            "story: no topic kept, no causal chain). Test loss is on the stories test split.",
        ),
        (
            "table",
            ["corpus", "size", "N", "D", "test loss", "TopicCloze", "StoryCloze"],
            table,
        ),
        ("p", f"Ours: {finding}. {PAPER_FIG3}"),
        ("fig", "fig3_data_ablation", "TopicCloze and StoryCloze by model size and corpus"),
    ]


def _fig5_blocks(groups: dict, unigram_note: str | None) -> list:
    head = ("h2", "Figure 5 (continued): loss and downstream envelopes per tokenizer")
    if len(groups) < 2:
        reason = unigram_note or "only one tokenizer was trained"
        return [head, ("p", f"Not drawn: {reason}.")]
    lines = []
    for name, g in groups.items():
        best = {m: np.nanmax(v) for m, v in g["metrics"].items() if np.isfinite(v).any()}
        lines.append(
            f"{name}: {len(g['run_C'])} single-epoch runs, lowest test loss "
            f"{np.min(g['L']) if len(g['L']) else float('nan'):.3f}, best "
            + ", ".join(f"{m.removesuffix('_acc')} {v:.3f}" for m, v in best.items())
        )
    return [
        head,
        (
            "p",
            "Eq. 4 on each tokenization is in Table 4 and the table above; loss is per token "
            "of each tokenization (a unigram token covers several k-means units, so the two "
            "losses are not on one scale; the slopes and the downstream metrics are).",
        ),
        ("p", "Ours: " + "; ".join(lines) + ". " + PAPER_FIG5),
        ("fig", "fig5_tokenizer_envelopes", "Loss and downstream envelopes per tokenizer"),
    ]


def _insert(text: str, before: str, fragment: str) -> str:
    """`fragment` before the first line matching `before` (regex), or at the end."""
    m = re.search(before, text, flags=re.MULTILINE)
    if m is None:
        return text.rstrip("\n") + "\n\n" + fragment
    return text[: m.start()] + fragment + text[m.start() :]


def add_to_report(
    report_dir: Path,
    tracking_uri: str,
    *,
    stories_exp: str,
    audiobook_exp: str | None,
    tokenizer_exp: str,
    unigram_note: str | None = None,
) -> list[str]:
    """Draw Figures 3 and 5 (continued) into `report_dir` and insert their sections into
    report.md and report.html; returns the figure names written."""
    from slmscale.report.document import to_html, to_markdown
    from slmscale.report.figures import (
        fig3_data_ablation,
        fig5_tokenizer_envelopes,
        save_figure,
    )
    from slmscale.units import write_bytes_atomic

    rows = data_ablation_rows(tracking_uri, stories_exp, audiobook_exp) if audiobook_exp else []
    groups = tokenizer_groups(tracking_uri, tokenizer_exp)
    written = []
    if rows:
        save_figure(fig3_data_ablation(rows), report_dir, "fig3_data_ablation")
        written.append("fig3_data_ablation")
    if len(groups) >= 2:
        save_figure(fig5_tokenizer_envelopes(groups), report_dir, "fig5_tokenizer_envelopes")
        written.append("fig5_tokenizer_envelopes")
    fig3 = _fig3_blocks(rows, stories_exp, audiobook_exp or "-")
    fig5 = _fig5_blocks(groups, unigram_note)
    md_path, html_path = report_dir / "report.md", report_dir / "report.html"
    md = md_path.read_text()
    md = _insert(md, r"^## Figure 4", to_markdown(fig3) + "\n")
    md = _insert(md, r"^## Fit quality", to_markdown(fig5) + "\n")
    write_bytes_atomic(md_path, md.encode())
    if html_path.is_file():
        page = html_path.read_text()
        for blocks, before in ((fig3, r"<h2>Figure 4"), (fig5, r"<h2>Fit quality")):
            full = to_html(blocks, report_dir, "")
            body = full[full.index("<body>\n") + len("<body>\n") : full.rindex("\n</body>")]
            page = _insert(page, before, body + "\n")
        write_bytes_atomic(html_path, page.encode())
    return written
