"""sWUGGY in-vocab: the ZeroSpeech 2021 leaderboard's `lexical_invocab` beside the overall score.

Official definition (zerospeech2021 `leaderboard.py`, `_score_invocab`): the by-pair scores are
grouped into frequency bands of the word's LibriSpeech count (oov, 1-5, 6-20, 21-100, >100, from
`pandas.cut([0, 1, 5, 20, 100, inf], right=False)`), and the in-vocab score is the mean of the
non-oov band means weighted by their item counts."""

from __future__ import annotations

import pytest
from test_eval_fixtures import (
    FINGERPRINT,
    LOSE,
    TIE,
    WIN,
    BigramLM,
    K,
    spec,
    write_gold,
    write_units,
)

from slmscale.evaluate import score_benchmarks
from slmscale.evaluate.metrics import by_frequency, frequency_band, invocab_accuracy

# (word frequency, outcome per voice under the default "sum" score)
ITEMS = [
    (0, [WIN, WIN]),  # oov: left out of in-vocab
    (0, [WIN, LOSE]),
    (3, [LOSE, LOSE]),  # band 1-5
    (7, [WIN, TIE]),  # band 6-20
    (50, [WIN, WIN]),  # band 21-100
    (500, [LOSE, WIN]),  # band >100
    (1000, [WIN, WIN]),
]


def swuggy_bench(tmp, items, with_frequency=True):
    rows, utts = [], {}
    for i, (freq, voices) in enumerate(items):
        for v, (pos, neg) in enumerate(voices):
            for correct, units in ((1, pos), (0, neg)):
                name = f"w{i}v{v}c{correct}"
                row = {
                    "filename": name,
                    "correct": correct,
                    "id": str(i),
                    "voice": f"v{v}",
                    "word": f"word{i}" if correct else f"nonword{i}",
                    "phones": "a b",
                    "length": 2,
                }
                if with_frequency:
                    row["frequency"] = freq
                rows.append(row)
                utts[name] = units
    root = tmp / "zr"
    write_gold(root / "lexical" / "dev", rows)
    return root, write_units(tmp / "units", utts, dataset="swuggy")


def test_frequency_bands_are_the_official_ones():
    assert [frequency_band(f) for f in (0, 1, 4, 5, 19, 20, 99, 100, 10**6)] == [
        "oov",
        "1-5",
        "1-5",
        "6-20",
        "6-20",
        "21-100",
        "21-100",
        ">100",
        ">100",
    ]
    assert frequency_band("") is None and frequency_band(None) is None


def test_invocab_is_the_band_weighted_mean_without_oov(tmp_path):
    root, units = swuggy_bench(tmp_path, ITEMS)
    res = score_benchmarks(
        BigramLM(), [spec("swuggy", units, root)], n_units=K, tokenizer_fingerprint=FINGERPRINT
    )
    d = res.details["swuggy"]
    item_score = {0: 1.0, 1: 0.5, 2: 0.0, 3: 0.75, 4: 1.0, 5: 0.5, 6: 1.0}  # under "sum"
    assert res.metrics["swuggy_acc"] == pytest.approx(sum(item_score.values()) / 7)
    in_vocab = [item_score[i] for i in range(2, 7)]
    assert res.metrics["swuggy_acc_invocab"] == pytest.approx(sum(in_vocab) / len(in_vocab))
    assert d["items_invocab"] == 5
    assert d["by_frequency"]["oov"] == {"acc": 0.75, "n_items": 2}
    assert d["by_frequency"][">100"] == {"acc": 0.75, "n_items": 2}
    # the same number the official scorer gets: band means weighted by their counts
    bands = {b: v for b, v in d["by_frequency"].items() if b != "oov"}
    weighted = sum(v["acc"] * v["n_items"] for v in bands.values()) / sum(
        v["n_items"] for v in bands.values()
    )
    assert d["acc_invocab"] == pytest.approx(weighted)
    assert "swuggy in-vocab" in res.table()
    assert "acc_invocab_mean" in d  # both scores, like acc_sum / acc_mean


def test_no_frequency_column_means_no_invocab_score(tmp_path):
    root, units = swuggy_bench(tmp_path, ITEMS, with_frequency=False)
    res = score_benchmarks(
        BigramLM(), [spec("swuggy", units, root)], n_units=K, tokenizer_fingerprint=FINGERPRINT
    )
    assert "swuggy_acc_invocab" not in res.metrics
    assert res.details["swuggy"]["acc_invocab"] is None
    assert "in-vocab" not in res.table()


def test_helpers_agree_on_a_direct_case():
    from slmscale.evaluate.formats import Pair

    pairs = [
        Pair("a", "b", ("1",), info={"frequency": "0"}),
        Pair("c", "d", ("2",), info={"frequency": "12"}),
    ]
    bands = by_frequency(pairs, {("1",): 1.0, ("2",): 0.0})
    assert invocab_accuracy(bands) == (0.0, 1)
