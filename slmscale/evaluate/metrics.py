"""The official aggregation rules, the default score per benchmark, and metric names.

Per pair (ZeroSpeech 2021 evaluation, also the TWIST StoryCloze rule): 1 if the positive utterance
scores higher, 0.5 on an exact tie, else 0.  sBLIMP and sWUGGY average that over voices within an
item ((type, subtype, id) for sBLIMP, id for sWUGGY), then over items; the cloze benchmarks have one
pair per story, so their accuracy is the share of stories won (ties 0.5).

Default score per benchmark, following the reference implementations:
- sBLIMP, sWUGGY: summed log-probability (the ZeroSpeech 2021 baseline LM scoring,
  `compute_proba_LSTM`: log P(abcd) by the chain rule, summed).
- StoryCloze, TopicCloze: mean log-likelihood per token (TWIST's evaluator, slp-rl/slamkit,
  `mean_nll: true`).

sWUGGY in-vocab (the ZeroSpeech 2021 leaderboard's `lexical_invocab`, zerospeech2021
`leaderboard.py`): item scores are grouped into the official frequency bands of the word's
LibriSpeech count (`oov` = 0, then [1, 5), [5, 20), [20, 100), >= 100, labelled
`1-5`, `6-20`, `21-100`, `>100`); the in-vocab score is the mean of the non-oov band means
weighted by their item counts, i.e. the mean over the items whose word occurs in LibriSpeech.
Items without a frequency are in no band, as in the official scorer.  Logged as
`swuggy_acc_invocab` (with the benchmark's chosen score) beside `swuggy_acc`.

Metric names: the primary accuracy is `tracking.schema.BENCHMARK_METRICS[name]` (e.g. `sblimp_acc`),
scored with the benchmark's chosen score; both variants are also logged as
`<primary>_sum` and `<primary>_mean` (e.g. `sblimp_acc_sum`, `sblimp_acc_mean`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from slmscale.evaluate.formats import Pair
from slmscale.tracking.schema import BENCHMARK_METRICS

SCORE_MODES = ("sum", "mean")
DEFAULT_SCORE = {"sblimp": "sum", "swuggy": "sum", "topic_cloze": "mean", "story_cloze": "mean"}
SCORE_REFERENCE = {
    "sum": "summed log-probability (ZeroSpeech 2021 baseline)",
    "mean": "mean log-likelihood per unit (TWIST / slamkit)",
}


FREQUENCY_BANDS = (("oov", 0, 1), ("1-5", 1, 5), ("6-20", 5, 20), ("21-100", 20, 100))
TOP_BAND = (">100", 100)
INVOCAB = "invocab"


def metric_name(benchmark: str, mode: str | None = None) -> str:
    """`sblimp_acc` for the primary metric; `sblimp_acc_sum` / `sblimp_acc_mean` per score;
    `swuggy_acc_invocab` for sWUGGY's in-vocab score."""
    base = BENCHMARK_METRICS[benchmark]
    return base if mode is None else f"{base}_{mode}"


def pair_outcome(pos_score: float, neg_score: float) -> float:
    """1 if the positive utterance scores higher, 0.5 on an exact tie, else 0."""
    if pos_score > neg_score:
        return 1.0
    if pos_score == neg_score:
        return 0.5
    return 0.0


def item_scores(pairs: Sequence[Pair], outcomes: Sequence[float]) -> dict[tuple, float]:
    """Mean pair outcome over the voices of each item (the official by-pair score)."""
    by_item: dict[tuple, list[float]] = defaultdict(list)
    for pair, outcome in zip(pairs, outcomes, strict=True):
        by_item[pair.item].append(outcome)
    return {item: sum(v) / len(v) for item, v in by_item.items()}


def frequency_band(frequency) -> str | None:
    """The official band of a word's LibriSpeech count, None when it has no usable count."""
    try:
        f = float(frequency)
    except (TypeError, ValueError):
        return None
    if f != f or f < 0:
        return None
    for label, lo, hi in FREQUENCY_BANDS:
        if lo <= f < hi:
            return label
    return TOP_BAND[0]


def by_frequency(pairs: Sequence[Pair], items: dict[tuple, float]) -> dict[str, dict]:
    """Item scores averaged per frequency band (the word's frequency, from its first pair)."""
    band_of: dict[tuple, str | None] = {}
    for p in pairs:
        band_of.setdefault(p.item, frequency_band(p.info.get("frequency")))
    groups: dict[str, list[float]] = defaultdict(list)
    for item, score in items.items():
        if band_of.get(item) is not None:
            groups[band_of[item]].append(score)
    order = [b[0] for b in FREQUENCY_BANDS] + [TOP_BAND[0]]
    return {
        b: {"acc": sum(groups[b]) / len(groups[b]), "n_items": len(groups[b])}
        for b in order
        if groups.get(b)
    }


def invocab_accuracy(bands: dict[str, dict]) -> tuple[float | None, int]:
    """(in-vocab accuracy, items): non-oov band means weighted by their item counts."""
    kept = [v for b, v in bands.items() if b != "oov"]
    n = sum(v["n_items"] for v in kept)
    if n == 0:
        return None, 0
    return sum(v["acc"] * v["n_items"] for v in kept) / n, n


def breakdown(items: dict[tuple, float], depth: int) -> dict[str, dict]:
    """Item scores averaged by the first `depth` item fields (sBLIMP: 1 = type, 2 = subtype)."""
    groups: dict[str, list[float]] = defaultdict(list)
    for item, score in items.items():
        groups["/".join(item[:depth])].append(score)
    return {k: {"acc": sum(v) / len(v), "n_items": len(v)} for k, v in sorted(groups.items())}


def _with_invocab_rows(rows: list[tuple], details: dict[str, dict]) -> list[tuple]:
    """A `swuggy in-vocab` row under sWUGGY when gold.csv gave word frequencies."""
    out = []
    for row in rows:
        out.append(row)
        d = details.get(row[0])
        if d is not None and d.get("acc_invocab") is not None:
            other = "mean" if d["score"] == "sum" else "sum"
            out.append(
                (
                    f"{row[0]} in-vocab",
                    d["split"],
                    f"{d['items_invocab']} items",
                    f"{d['acc_invocab']:.4f}",
                    row[4],
                    f"{d[f'acc_invocab_{other}']:.4f} ({other})",
                )
            )
    return out


def format_table(details: dict[str, dict]) -> str:
    """One row per benchmark: pairs scored/total, accuracy by the default score and the other."""
    header = ("benchmark", "split", "pairs scored/total", "acc", "score", "acc (other score)")
    rows = [header]
    for name, d in details.items():
        other = "mean" if d["score"] == "sum" else "sum"
        rows.append(
            (
                name,
                d["split"],
                f"{d['pairs_scored']}/{d['pairs_total']}",
                f"{d['acc']:.4f}",
                d["score"] + (" (default)" if d["score"] == d["score_default"] else ""),
                f"{d[f'acc_{other}']:.4f} ({other})",
            )
        )
    rows = _with_invocab_rows(rows, details)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
