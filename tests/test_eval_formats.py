"""Benchmark layouts -> pairs: gold.csv by header, pairing by key (never file order), TWIST names."""

from __future__ import annotations

import pytest
from test_eval_fixtures import sblimp_bench, write_gold

from slmscale.errors import UserError
from slmscale.evaluate import load_pairs

ITEMS = [
    ("anaphor", "gender", "1", [([0], [1]), ([1], [0])]),
    ("anaphor", "number", "2", [([2], [3])]),
    ("island", "wh", "1", [([3], [2]), ([0], [0])]),
]


def test_sblimp_pairs_come_from_gold_keys_not_row_or_file_order(tmp_path):
    root, _, rows = sblimp_bench(tmp_path / "a", ITEMS)
    shuffled_root, _, _ = sblimp_bench(tmp_path / "b", ITEMS, shuffle_seed=7)
    a = load_pairs("sblimp", root, "dev")
    b = load_pairs("sblimp", shuffled_root, "dev")
    assert a.pairs == b.pairs
    assert a.n_total == 5 and len(a.pairs) == 5 and a.problems == []
    by_name = {r["filename"]: r for r in rows}
    for p in a.pairs:
        pos, neg = by_name[p.pos], by_name[p.neg]
        assert (pos["correct"], neg["correct"]) == (1, 0)
        for col in ("type", "subtype", "id", "voice"):
            assert pos[col] == neg[col]
        assert p.item == (pos["type"], pos["subtype"], pos["id"])
    # same id "1" in two types stays two items
    assert {p.item for p in a.pairs} == {
        ("anaphor", "gender", "1"),
        ("anaphor", "number", "2"),
        ("island", "wh", "1"),
    }


def test_sblimp_broken_groups_are_reported_not_fatal(tmp_path):
    rows = [
        dict(filename="a", type="t", subtype="s", id="1", voice="v", correct=1, transcription=""),
        dict(filename="b", type="t", subtype="s", id="1", voice="v", correct=0, transcription=""),
        dict(filename="c", type="t", subtype="s", id="2", voice="v", correct=1, transcription=""),
        dict(filename="d", type="t", subtype="s", id="2", voice="v", correct=1, transcription=""),
    ]
    write_gold(tmp_path / "syntactic" / "dev", rows)
    b = load_pairs("sblimp", tmp_path, "dev")
    assert [(p.pos, p.neg) for p in b.pairs] == [("a", "b")]
    assert b.n_total == 2
    assert len(b.problems) == 1 and "id=2" in b.problems[0] and "2 positive" in b.problems[0]


def test_swuggy_official_columns(tmp_path):
    rows = []
    for i, (w, nw) in enumerate([("hat", "hap"), ("dog", "dag")]):
        for v in ("Alex", "Bruce"):
            for correct, word in ((1, w), (0, nw)):
                rows.append(
                    dict(
                        filename=f"{word}{v}",
                        correct=correct,
                        id=str(i),
                        voice=v,
                        frequency=3,
                        word=word,
                        phones="x y",
                        length=2,
                    )
                )
    write_gold(tmp_path / "lexical" / "test", rows, shuffle_seed=1)
    b = load_pairs("swuggy", tmp_path, "test")
    assert len(b.pairs) == 4 and b.n_total == 4
    assert {(p.pos, p.neg, p.item, p.voice) for p in b.pairs} == {
        ("hatAlex", "hapAlex", ("0",), "Alex"),
        ("hatBruce", "hapBruce", ("0",), "Bruce"),
        ("dogAlex", "dagAlex", ("1",), "Alex"),
        ("dogBruce", "dagBruce", ("1",), "Bruce"),
    }


def test_gold_missing_column_or_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="gold.csv: no such file"):
        load_pairs("sblimp", tmp_path, "dev")
    folder = tmp_path / "lexical" / "dev"
    folder.mkdir(parents=True)
    (folder / "gold.csv").write_text("filename,id,correct\na,1,1\n")
    with pytest.raises(UserError, match="missing column.*voice"):
        load_pairs("swuggy", tmp_path, "dev")


def test_cloze_pairs_by_label_in_the_name(tmp_path):
    for name in ("0_correct", "0_incorrect", "1_incorrect", "1_correct", "10_correct_x", "2_true"):
        (tmp_path / f"{name}.wav").write_bytes(b"")
    (tmp_path / "10_incorrect_x.wav").write_bytes(b"")
    (tmp_path / "3_what.wav").write_bytes(b"")
    b = load_pairs("story_cloze", tmp_path, "test")  # no test/ folder: files are in the root
    assert [(p.pos, p.neg) for p in b.pairs] == [
        ("0_correct", "0_incorrect"),
        ("1_correct", "1_incorrect"),
        ("10_correct_x", "10_incorrect_x"),
    ]
    assert b.n_total == 4  # stories 0, 1, 10, 2 (2 has no negative)
    assert any("story 2" in p for p in b.problems)
    assert any("3_what.wav" in p for p in b.problems)


def test_cloze_split_subfolder_is_used_when_present(tmp_path):
    (tmp_path / "dev").mkdir()
    for name in ("5_correct", "5_incorrect"):
        (tmp_path / "dev" / f"{name}.wav").write_bytes(b"")
    b = load_pairs("topic_cloze", tmp_path, "dev")
    assert [(p.pos, p.neg) for p in b.pairs] == [("5_correct", "5_incorrect")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no audio files"):
        load_pairs("topic_cloze", tmp_path / "empty", "dev")
