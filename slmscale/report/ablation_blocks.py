"""Report sections of the ablations: Figure 3 (data) and Figure 5 (tokenizer), from arms.

What the runs support is said, and no more: accuracies with binomial intervals over the items
scored, "ahead" only for a benchmark the laws do not find at chance and counted beyond the
intervals, each tokenizer's Eq. 4 with its verdicts.
"""

from __future__ import annotations

from slmscale.report.arms import EQ4, Arm, data_ablation_claims
from slmscale.report.numbers import (
    not_identified_names,
    not_identified_text,
    num,
    verdict,
    verdict_cell,
    with_interval,
)

PAPER_FIG3 = (
    "Paper (Figure 3): models trained on sTinyStories beat models trained on an equal number of "
    "audiobook tokens (LibriSpeech + LibriLight) on TopicCloze and StoryCloze at every size."
)
PAPER_FIG5 = (
    "Paper (Figure 5, Table 4 unigram row): on unigram-compressed units the loss scales as well "
    "or better with compute (Eq. 4: E 1.42, A 3.85, B 8.9, alpha 0.15, beta 0.16), but the "
    "downstream metrics scale worse; StoryCloze does not improve with compute."
)
HOW = (
    "`slmscale report --experiment MAIN --compare EXP...`: an experiment with the main "
    "tokenizer on another corpus gives Figure 3, one with another tokenizer Figure 5"
)


def _acc_cell(v: dict | None) -> str:
    if not v:
        return "-"
    ci = v.get("ci95")
    if not ci:
        return f"{num(v['acc'], 3)} (item count unknown: no interval)"
    return f"{num(v['acc'], 3)} [{num(ci[0], 3)}, {num(ci[1], 3)}] ({v['n_items']} items)"


def fig3_blocks(arms: list[Arm], rows: list[dict]) -> list:
    head = ("h2", "Figure 3: data ablation (corpora compared)")
    if not arms:
        return [head, ("p", f"No data ablation in this report: it needs runs on another corpus "
                            f"with the same tokenizer ({HOW}).")]  # fmt: skip
    if not rows:
        return [head, ("p", "The compared corpora share no (model size, token budget) point: "
                            "nothing to set side by side.")]  # fmt: skip
    metrics = sorted({m for r in rows for m in r["metrics"]})
    table = [
        [r["arm"], r["model_size"], num(r["params"], 3), num(r["tokens"], 3), num(r["loss"], 4),
         *(_acc_cell(r["metrics"].get(m)) for m in metrics)]
        for r in rows
    ]  # fmt: skip
    claims = data_ablation_claims(arms, rows)
    sizes = len({(r["params"], r["tokens"]) for r in rows})
    described = "; ".join(
        f"{a.label} (experiment {a.experiment}, tokenizer {a.tokenizer or '-'})" for a in arms
    )
    return [
        head,
        (
            "p",
            f"Runs of the same {sizes} (model size, token budget) points on each corpus: "
            f"{described}. Accuracies are means over a point's runs with 95% Wilson intervals "
            "over the items scored (eval details of each run); test loss is on each "
            "experiment's own test split.",
        ),  # fmt: skip
        ("table", ["corpus (experiment)", "size", "N", "D", "test loss", *metrics], table),
        ("p", "Ours: " + "; ".join(f"{m}: {c}" for m, c in claims.items()) + f". {PAPER_FIG3}"),
        ("fig", "fig3_data_ablation", "Accuracy by model size and corpus, 95% binomial intervals"),
    ]


def _note(arm: Arm) -> str:
    """What a reader must know before reading a tokenizer's constants."""
    if arm.fit is None:
        return arm.reason or "no fit"
    if arm.fit.get("not_identified_reason"):
        return not_identified_text(arm.fit["not_identified_reason"])
    if not arm.fit.get("verdicts") and "not_identified" not in arm.fit:
        return "no interval computed for this tokenizer: not identified"
    bad = [k for k in not_identified_names(arm.fit) if k in (*EQ4, "envelope_gamma")]
    if not bad:
        return "every Eq. 4 constant identified"
    return "not identified: " + "; ".join(
        f"{k} ({verdict_cell(verdict(arm.fit, k)).removeprefix('not identified: ')})" for k in bad
    )


def _cell(block: dict, key: str, value) -> str:
    return with_interval(value, (block.get("ci95") or {}).get(key), verdict(block, key))


def fig5_table(arms: list[Arm]) -> tuple[list[str], list[list[str]]]:
    head = ["tokenizer", "experiment", "runs", *EQ4, "envelope gamma", "note"]
    rows = []
    for a in arms:
        block = a.fit or {}
        params, env = block.get("params") or {}, block.get("envelope") or {}
        rows.append([a.tokenizer or "-", a.experiment, str(len(a.table)),
                     *(_cell(block, k, params.get(k)) for k in EQ4),
                     _cell(block, "envelope_gamma", env.get("gamma")), _note(a)])  # fmt: skip
    return head, rows


def fig5_blocks(arms: list[Arm], doc: dict) -> list:
    head = ("h2", "Figure 5: tokenizers compared")
    if len(arms) < 2:
        return [
            head,
            ("p", f"One tokenizer in these runs ({doc.get('tokenizer') or 'unnamed'}): nothing to "
                  f"compare ({HOW}); the figure shows this tokenizer's loss envelope."),
            ("fig", "fig5_tokenizers", "Loss envelope of the one tokenizer"),
        ]  # fmt: skip
    best = []
    for a in arms:
        parts = [f"{m} {num(float(v.max()), 3)}" for m, v in sorted(a.table.metrics.items())
                 if len(v) and v[v == v].size]  # fmt: skip
        best.append(f"{a.tokenizer}: best " + ", ".join(parts) if parts else a.tokenizer)
    return [
        head,
        ("table", *fig5_table(arms)),
        ("p", "Each tokenizer's Eq. 4 is fitted on its own runs, with the same bootstrap and "
              "identification rule as the main fit; loss is per token of each tokenization (a "
              "unigram token covers several units, so the losses are not on one scale; the "
              "exponents and the downstream accuracies are)."),
        ("p", "Ours: " + "; ".join(best) + f". {PAPER_FIG5}"),
        ("fig", "fig5_tokenizer_envelopes", "Loss and downstream envelopes per tokenizer"),
    ]  # fmt: skip
