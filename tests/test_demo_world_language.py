"""The demo language: agreement, topics, causal patterns, non-words (pure, milliseconds)."""

from __future__ import annotations

import numpy as np
import pytest

from slmscale.demo import language as lang


def _stories(n: int, seed: int = 0) -> list[lang.Story]:
    return [lang.sample_story(np.random.default_rng([seed, i])) for i in range(n)]


def test_every_inflected_form_is_one_word_made_of_known_phones():
    forms = list(lang.LEXICON)
    assert len(forms) == len(set(forms))
    assert all(set(f) <= set(lang.PHONES) for f in forms)
    assert all(2 <= len(f) <= 5 for f in forms)


def test_stories_are_deterministic_from_the_seed():
    assert _stories(20, seed=3) == _stories(20, seed=3)
    assert _stories(20, seed=3) != _stories(20, seed=4)


def test_story_sentences_agree_and_keep_to_the_topic():
    for story in _stories(200):
        assert 3 <= len(story.sentences) <= 5
        for sentence in story.sentences:
            assert lang.agreement_violations(sentence) == 0, sentence
            topics = {lang.LEXICON[f].topic for f in sentence} - {None}
            assert topics == {story.topic}, sentence


def test_story_follows_its_causal_pattern():
    for story in _stories(200):
        p = lang.PATTERNS[story.pattern]
        state, action, ending = story.sentences[-3:]
        assert state[-1] == lang.PREDICATES[p.state]
        assert lang.LEXICON[action[len(ending) - 2]].lemma == p.verb
        assert ending[-1] == lang.PREDICATES[p.result]


def test_broken_ending_changes_only_the_result_to_another_patterns():
    results = {lang.PREDICATES[p.result] for p in lang.PATTERNS.values()}
    for i, story in enumerate(_stories(100)):
        bad = lang.broken_ending(story, np.random.default_rng(i))
        assert bad[:-1] == story.ending[:-1]
        assert bad[-1] != story.ending[-1] and bad[-1] in results


@pytest.mark.parametrize("seed", range(5))
def test_sblimp_bad_member_has_exactly_one_agreement_violation(seed):
    rng = np.random.default_rng(seed)
    for _ in range(100):
        subtype, good = lang.sample_sentence(rng)
        bad = lang.flip_agreement(good)
        assert lang.agreement_violations(good) == 0
        assert lang.agreement_violations(bad) == 1
        assert sum(a != b for a, b in zip(good, bad, strict=True)) == 1
        assert subtype in ("copula", "transitive", "attributive")


def test_nonwords_are_not_in_the_lexicon_and_keep_the_shape():
    rng = np.random.default_rng(0)
    for word in lang.word_forms() * 5:
        fake = lang.nonword(word, rng)
        assert fake not in lang.LEXICON
        assert len(fake) == len(word)
        assert sum(a != b for a, b in zip(word, fake, strict=True)) == 1
        for a, b in zip(word, fake, strict=True):
            assert (a in lang.VOWELS) == (b in lang.VOWELS)
