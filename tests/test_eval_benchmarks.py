"""score_benchmarks end to end: official aggregation, bad input, tokenizer refusal, a real Llama."""

from __future__ import annotations

import json

import pytest
import torch
from test_eval_fixtures import (
    FINGERPRINT,
    LOSE,
    TIE,
    WIN,
    BigramLM,
    K,
    cloze_bench,
    sblimp_bench,
    spec,
    write_units,
)

from slmscale.bench.evaluate import measure_pairs_per_second
from slmscale.errors import UserError
from slmscale.evaluate import check_benchmarks, score_benchmarks
from slmscale.model import ModelShape, build_model

# Item A: 3 voices win/lose/tie; item B: 1 voice win; item C (another type): lose, win.
# Under "sum": A = (1 + 0 + .5)/3 = .5, B = 1, C = .5  -> acc 2/3 (flat pair mean would be .583)
# Under "mean" WIN and LOSE flip: A = .5, B = 0, C = .5 -> acc 1/3
ITEMS = [
    ("agreement", "number", "1", [WIN, LOSE, TIE]),
    ("agreement", "gender", "2", [WIN]),
    ("island", "wh", "3", [LOSE, WIN]),
]


def _run(benchmarks, model=None, **kw):
    kw.setdefault("tokenizer_fingerprint", FINGERPRINT)
    return score_benchmarks(model or BigramLM(), benchmarks, n_units=K, **kw)


def test_sblimp_voice_then_item_averaging_and_tie_rule_exactly(tmp_path):
    root, units, _ = sblimp_bench(tmp_path, ITEMS, shuffle_seed=3)
    res = _run([spec("sblimp", units, root)])
    assert res.metrics["sblimp_acc"] == pytest.approx(2 / 3, abs=1e-12)
    assert res.metrics["sblimp_acc_sum"] == pytest.approx(2 / 3, abs=1e-12)
    assert res.metrics["sblimp_acc_mean"] == pytest.approx(1 / 3, abs=1e-12)
    d = res.details["sblimp"]
    assert d["score"] == d["score_default"] == "sum"
    assert d["by_type"] == {
        "agreement": {"acc": pytest.approx(0.75), "n_items": 2},
        "island": {"acc": pytest.approx(0.5), "n_items": 1},
    }
    assert d["by_subtype"]["agreement/number"]["acc"] == pytest.approx(0.5)
    assert d["by_subtype"]["agreement/gender"]["acc"] == pytest.approx(1.0)
    assert res.counts["sblimp"] == {
        "pairs_total": 6,
        "pairs_scored": 6,
        "pairs_dropped": 0,
        "items_scored": 3,
    }
    assert res.warnings == []
    json.dumps(res.details)  # the MLflow artifact must be JSON-able


def test_score_override_picks_the_primary_metric(tmp_path):
    root, units, _ = sblimp_bench(tmp_path, ITEMS)
    res = _run([spec("sblimp", units, root, score="mean")])
    assert res.metrics["sblimp_acc"] == pytest.approx(1 / 3, abs=1e-12)
    assert res.details["sblimp"]["score"] == "mean"
    assert res.details["sblimp"]["by_type"]["agreement"]["acc"] == pytest.approx(0.25)


def test_cloze_default_is_mean_and_ties_count_half(tmp_path):
    root, units = cloze_bench(tmp_path, [WIN, LOSE, LOSE, TIE])
    res = _run([spec("story_cloze", units, root, split="test")])
    # mean: WIN -> 0, LOSE -> 1, LOSE -> 1, TIE -> .5 : 2.5 / 4
    assert res.metrics["story_cloze_acc"] == pytest.approx(2.5 / 4, abs=1e-12)
    assert res.metrics["story_cloze_acc_sum"] == pytest.approx(1.5 / 4, abs=1e-12)
    assert res.details["story_cloze"]["score"] == "mean"


def test_missing_rejected_and_empty_files_are_reported_and_dropped(tmp_path):
    items = [("t", "s", str(i), [WIN]) for i in range(5)]
    root, _, rows = sblimp_bench(tmp_path, items)
    names = {(r["id"], r["correct"]): r["filename"] for r in rows}
    utts = {r["filename"]: (WIN[0] if r["correct"] == 1 else WIN[1]) for r in rows}
    gone, rejected, empty = names[("0", 1)], names[("1", 0)], names[("2", 1)]
    del utts[gone], utts[rejected]
    utts[empty] = []
    units = write_units(
        tmp_path / "units2", utts, rejects={rejected: "decode failed: truncated file"}
    )
    res = _run([spec("sblimp", units, root)])
    assert res.counts["sblimp"]["pairs_scored"] == 2
    assert res.counts["sblimp"]["pairs_total"] == 5
    assert res.metrics["sblimp_acc"] == 1.0
    (line,) = res.warnings
    assert "3 of 5 pairs dropped" in line
    assert f"{gone} not in the units dataset" in line
    assert f"{rejected} rejected at tokenize time: decode failed" in line
    assert f"{empty} has empty units" in line
    assert len(res.details["sblimp"]["problems"]) == 3


def test_nothing_scorable_is_a_user_error(tmp_path):
    root, _, _ = sblimp_bench(tmp_path, ITEMS)
    units = write_units(tmp_path / "other", {"zzz": [1, 2]})
    with pytest.raises(UserError, match="no sblimp pair could be scored"):
        check_benchmarks([spec("sblimp", units, root)], n_units=K, tokenizer_fingerprint=None)


def test_tokenizer_mismatch_is_refused(tmp_path):
    root, units, _ = sblimp_bench(tmp_path, ITEMS)
    with pytest.raises(UserError, match="different tokenizer"):
        _run([spec("sblimp", units, root)], tokenizer_fingerprint="0123456789abcdef")
    other_k = write_units(tmp_path / "k8", {"a": [1]}, meta={"n_units": 8})
    with pytest.raises(UserError, match="K=8"):
        check_benchmarks([spec("sblimp", other_k, root)], n_units=K, tokenizer_fingerprint=None)
    # None skips the fingerprint check
    assert _run([spec("sblimp", units, root)], tokenizer_fingerprint=None).metrics


def test_units_found_by_relative_path_id(tmp_path):
    root, _, rows = sblimp_bench(tmp_path, ITEMS[:1])
    utts = {
        f"syntactic/dev/{r['filename']}": (WIN[0] if r["correct"] == 1 else WIN[1]) for r in rows
    }
    units = write_units(tmp_path / "rel", utts)
    res = _run([spec("sblimp", units, root)])
    assert res.counts["sblimp"]["pairs_scored"] == 3


def test_tiny_llama_end_to_end_matches_unbatched_scoring(tmp_path):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)

    def rand(n):
        return torch.randint(0, K, (n,), generator=gen).tolist()

    stories = [(rand(30 + i), rand(28 + 2 * i)) for i in range(6)] + [(rand(45), rand(20))]
    root, units = cloze_bench(tmp_path, stories, name="topic_cloze")
    s_root, s_units, _ = sblimp_bench(tmp_path, [("t", "s", "1", [(rand(5), rand(7))] * 2)])
    model = build_model(ModelShape("tiny", 2, 32, 2), n_units=K, context=40)
    model.train()
    res = _run(
        [spec("topic_cloze", units, root, split="test"), spec("sblimp", s_units, s_root)],
        model=model,
        max_batch_tokens=100,
    )
    assert model.training  # mode restored
    assert set(res.metrics) == {
        f"{b}_acc{s}" for b in ("topic_cloze", "sblimp") for s in ("", "_sum", "_mean")
    }
    # the same accuracy from one-at-a-time forward passes (truncated like the scorer: last 39 units)
    model.eval()
    wins = 0.0
    with torch.no_grad():
        for pos, neg in stories:
            m = []
            for seq in (pos, neg):
                ids = torch.tensor([[K + 1, *seq[-39:]]])
                logp = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
                m.append(logp.gather(-1, ids[0, 1:, None]).mean().item())
            wins += 1.0 if m[0] > m[1] else 0.5 if m[0] == m[1] else 0.0
    assert res.metrics["topic_cloze_acc"] == pytest.approx(wins / len(stories))
    assert res.details["topic_cloze"]["truncated_utterances"] == 1  # the 45-unit story
    assert any("truncated from the left" in w for w in res.warnings)
    assert 0 <= res.metrics["sblimp_acc"] <= 1


def test_measure_pairs_per_second_runs_on_cpu():
    model = build_model(ModelShape("tiny", 2, 32, 2), n_units=K, context=64)
    out = measure_pairs_per_second(model, n_units=K, n_pairs=8, mean_units=10)
    assert out["n_pairs"] == 8 and out["pairs_per_sec"] > 0 and out["device"] == "cpu"
