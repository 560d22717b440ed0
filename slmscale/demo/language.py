"""A tiny synthetic language for the demo: phones, a lexicon, a grammar with agreement, stories.

Pure core (no Ray, no MLflow, not even numpy beyond a `Generator` passed in).  The language is
fixed; the seed only decides which sentences and stories are drawn.  It is made to carry the
structure the paper's benchmarks probe, at a size a tiny LM learns in seconds:

- phones: 14, each written as one character (5 vowels, 4 sonorants, 5 noise consonants);
- words: 2-5 phones; every inflected form is a distinct string, so a sentence parses unambiguously;
- syntax (sBLIMP-like): subject-verb number agreement.  A subject is `DET [ADJ] NOUN`, marked
  for number on the determiner (`lo`/`li`) and the noun (plural `-s`); the verb (or the copula
  `et`/`ut`) agrees through its first vowel (`e-` singular, `u-` plural), right after the noun;
- lexicon (sWUGGY-like): real words against non-words one phone away, of the same shape;
- topics (TopicCloze-like): four topics, each with its own characters, foods and shelter, all
  sharing the topic's vowel; a story only ever names its own topic's nouns;
- causal patterns (StoryCloze-like): a story states a need, the action that meets it, and the
  result, e.g. "the cow is hungry. the cow eats the corn. the cow is full."; the three words of
  a pattern share two consonants.

Beside the stories, an "audiobook" kind of passage (`sample_passage`): the same sentences, drawn
from independent stories and strung together, so the words, grammar and sentence statistics are
the stories' own but nothing links one sentence to the next (no topic kept, no need met).  It is
the demo's stand-in for the paper's audiobooks against sTinyStories (Figure 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VOWELS = "aeiou"
SONORANTS = "mnlr"
NOISE_CONSONANTS = "ptksf"
PHONES = VOWELS + SONORANTS + NOISE_CONSONANTS

SG, PL = "sg", "pl"
DETERMINERS = {SG: "lo", PL: "li"}
# Agreement is a prefix vowel on the verb and the copula (`e` singular, `u` plural): it sits right
# after the subject noun (plural `-s`), close enough for a one-layer model to see both.
AGREEMENT_PREFIX = {SG: "e", PL: "u"}
COPULA_STEM = "t"
PLURAL_SUFFIX = "s"
ATTRIBUTIVE = {"big": "muku", "small": "tuku"}

# topic -> role -> noun stems (CVCV).  Characters act; foods are eaten; the shelter is found.
# Every noun of a topic has the topic's vowel (farm a, sea o, forest i, sky e): the topic is a
# distributional signal over the whole story, as in real speech, that a tiny model can pick up.
TOPICS: dict[str, dict[str, tuple[str, ...]]] = {
    "farm": {"character": ("kama", "pata", "tafa"), "food": ("nara", "saka"), "shelter": ("lapa",)},
    "sea": {"character": ("moso", "roko", "fono"), "food": ("tolo", "somo"), "shelter": ("nopo",)},
    "forest": {
        "character": ("riki", "nifi", "pimi"),
        "food": ("lisi", "tiki"),
        "shelter": ("kili",),
    },
    "sky": {"character": ("sepe", "fele", "tere"), "food": ("meke", "repe"), "shelter": ("nele",)},
}
# How many nouns each role of a topic has.  The stems above come first; the rest are CVCV forms
# with the topic's vowel, in a fixed order (`_more_stems`).  Nouns are drawn with Zipf weights
# (rank r has weight 1 / r^NOUN_ZIPF, `pick_noun`), as words are in real speech: a model meets
# the frequent nouns early and the rare ones only with more data, so the loss keeps falling with
# D as a power law instead of in one step once a handful of equally frequent words is learnt,
# and a small model can hold only the frequent ones (the N term).
NOUNS_PER_ROLE = {"character": 16, "food": 10, "shelter": 6}
NOUN_ZIPF = 1.0
NOUN_CONSONANTS = "ptksfmnlr"
# Each causal pattern's verb, state and result share two consonants (eat/hungry/full: p n;
# sleep/tired/rested: l m; find/cold/warm: s f; meet/sad/happy: r k), so an ending from another
# pattern stands out against the story before it.
VERB_STEMS = {"eat": "pun", "sleep": "lum", "find": "suf", "meet": "kur", "see": "tut"}
PREDICATES = {
    "hungry": "punu",
    "full": "nupu",
    "tired": "lumu",
    "rested": "mulu",
    "cold": "sufu",
    "warm": "fusu",
    "sad": "ruku",
    "happy": "kuru",
}
COPULA = {n: v + COPULA_STEM for n, v in AGREEMENT_PREFIX.items()}


@dataclass(frozen=True)
class Pattern:
    """A causal pattern: state -> action (verb, object role) -> result."""

    state: str
    verb: str
    object_role: str | None  # None: the object is another character of the topic
    result: str


PATTERNS: dict[str, Pattern] = {
    "hunger": Pattern("hungry", "eat", "food", "full"),
    "fatigue": Pattern("tired", "sleep", "shelter", "rested"),
    "cold": Pattern("cold", "find", "shelter", "warm"),
    "sadness": Pattern("sad", "meet", None, "happy"),
}


@dataclass(frozen=True)
class Word:
    form: str  # its phones, one character each
    lemma: str
    pos: str  # det, noun, verb, cop, adj, attr
    number: str | None = None
    topic: str | None = None


def _more_stems() -> None:
    """Extend every role of TOPICS to NOUNS_PER_ROLE stems (CVCV, the topic's vowel)."""
    rng = np.random.default_rng(1234)  # a fixed order: the language does not depend on a seed
    for roles in TOPICS.values():
        vowel = roles["character"][0][1]
        taken = {s for stems in roles.values() for s in stems}
        pairs = [a + vowel + b + vowel for a in NOUN_CONSONANTS for b in NOUN_CONSONANTS]
        fresh = [pairs[int(i)] for i in rng.permutation(len(pairs)) if pairs[int(i)] not in taken]
        for role, n in NOUNS_PER_ROLE.items():
            extra = n - len(roles[role])
            roles[role], fresh = (*roles[role], *fresh[:extra]), fresh[extra:]


_more_stems()


def _build_lexicon() -> dict[str, Word]:
    words: list[Word] = []
    for num in (SG, PL):
        words.append(Word(DETERMINERS[num], "the", "det", num))
        words.append(Word(COPULA[num], "be", "cop", num))
        for lemma, stem in VERB_STEMS.items():
            words.append(Word(AGREEMENT_PREFIX[num] + stem, lemma, "verb", num))
    for topic, roles in TOPICS.items():
        for stems in roles.values():
            for stem in stems:
                words.append(Word(stem, stem, "noun", SG, topic))
                words.append(Word(stem + PLURAL_SUFFIX, stem, "noun", PL, topic))
    words += [Word(form, lemma, "adj") for lemma, form in PREDICATES.items()]
    words += [Word(form, lemma, "attr") for lemma, form in ATTRIBUTIVE.items()]
    lexicon: dict[str, Word] = {}
    for w in words:
        if w.form in lexicon:
            raise AssertionError(f"demo lexicon: {w.form!r} is two words")
        if any(p not in PHONES for p in w.form):
            raise AssertionError(f"demo lexicon: {w.form!r} has a phone outside {PHONES}")
        lexicon[w.form] = w
    return lexicon


LEXICON: dict[str, Word] = _build_lexicon()

Sentence = tuple[str, ...]  # word forms


@dataclass(frozen=True)
class Story:
    topic: str
    pattern: str
    sentences: tuple[Sentence, ...]  # the last one is the pattern's result (the ending)

    @property
    def context(self) -> tuple[Sentence, ...]:
        return self.sentences[:-1]

    @property
    def ending(self) -> Sentence:
        return self.sentences[-1]


def pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def pick_noun(rng: np.random.Generator, stems):
    """One of `stems` with Zipf weights by rank (the first is the most frequent)."""
    w = 1.0 / np.arange(1, len(stems) + 1) ** NOUN_ZIPF
    return stems[int(rng.choice(len(stems), p=w / w.sum()))]


def noun_phrase(stem: str, number: str, attr: str | None = None) -> Sentence:
    noun = stem + (PLURAL_SUFFIX if number == PL else "")
    return (DETERMINERS[number], *((ATTRIBUTIVE[attr],) if attr else ()), noun)


def verb(lemma: str, number: str) -> str:
    return AGREEMENT_PREFIX[number] + VERB_STEMS[lemma]


def copula_sentence(subject: Sentence, number: str, predicate: str) -> Sentence:
    return (*subject, COPULA[number], PREDICATES[predicate])


def _stem_for(rng: np.random.Generator, topic: str, role: str | None, hero: str) -> str:
    """A noun of the topic in `role`; role None: another character than the hero."""
    roles = TOPICS[topic]
    return pick_noun(
        rng, roles[role] if role else tuple(s for s in roles["character"] if s != hero)
    )


def _object(rng: np.random.Generator, topic: str, role: str | None, hero: str) -> Sentence:
    return noun_phrase(_stem_for(rng, topic, role, hero), pick(rng, (SG, PL)))


def _scene(rng: np.random.Generator, topic: str, hero: str, subject: Sentence, number: str):
    """A scene-setting sentence: the hero sees something, or another character sleeps."""
    if rng.random() < 0.5:
        role = pick(rng, ("food", "shelter", None))
        return (*subject, verb("see", number), *_object(rng, topic, role, hero))
    other_number = pick(rng, (SG, PL))
    other = noun_phrase(_stem_for(rng, topic, None, hero), other_number)
    return (*other, verb("sleep", other_number))


def sample_story(
    rng: np.random.Generator, topic: str | None = None, pattern: str | None = None
) -> Story:
    """A 3-4 sentence story on one topic: 0-1 scene-setting sentence, then state, action, result.

    The hero is introduced once with an optional adjective (`lo muku kama`, the big cow), then
    named plainly (`lo kamo`).
    """
    topic = topic or pick(rng, tuple(TOPICS))
    pattern = pattern or pick(rng, tuple(PATTERNS))
    p = PATTERNS[pattern]
    hero = pick_noun(rng, TOPICS[topic]["character"])
    number = pick(rng, (SG, PL))
    first = noun_phrase(hero, number, pick(rng, (None, None, *ATTRIBUTIVE)))
    subject = noun_phrase(hero, number)
    sentences: list[Sentence] = []
    for _ in range(int(rng.integers(0, 2))):
        sentences.append(_scene(rng, topic, hero, subject if sentences else first, number))
    introduced = any(s[: len(first)] == first for s in sentences)
    sentences += [
        copula_sentence(subject if introduced else first, number, p.state),
        (*subject, verb(p.verb, number), *_object(rng, topic, p.object_role, hero)),
        copula_sentence(subject, number, p.result),
    ]
    return Story(topic, pattern, tuple(sentences))


def sample_passage(rng: np.random.Generator) -> tuple[Sentence, ...]:
    """An "audiobook" passage: as many sentences as a story has, each from its own story.

    Each sentence is a uniformly chosen sentence of an independently drawn story, so the
    passage has the stories' sentence distribution without their causal or topical structure.
    """
    n = len(sample_story(rng).sentences)
    out = []
    for _ in range(n):
        story = sample_story(rng)
        out.append(story.sentences[int(rng.integers(len(story.sentences)))])
    return tuple(out)


def broken_ending(story: Story, rng: np.random.Generator) -> Sentence:
    """StoryCloze negative: the same subject in the result state of another causal pattern."""
    ending = story.ending
    result = PATTERNS[story.pattern].result
    others = tuple(p.result for p in PATTERNS.values() if p.result != result)
    return (*ending[:-1], PREDICATES[pick(rng, others)])


def sample_sentence(rng: np.random.Generator) -> tuple[str, Sentence]:
    """A grammatical sentence for sBLIMP-like pairs: (subtype, sentence)."""
    topic = pick(rng, tuple(TOPICS))
    number = pick(rng, (SG, PL))
    hero = pick_noun(rng, TOPICS[topic]["character"])
    subtype = pick(rng, ("copula", "transitive", "attributive"))
    attr = pick(rng, tuple(ATTRIBUTIVE)) if subtype == "attributive" else None
    subject = noun_phrase(hero, number, attr)
    if subtype == "copula":
        return subtype, copula_sentence(subject, number, pick(rng, tuple(PREDICATES)))
    lemma = pick(rng, ("eat", "find", "meet", "see"))
    role = {"eat": "food", "find": "shelter"}.get(lemma)
    return subtype, (*subject, verb(lemma, number), *_object(rng, topic, role, hero))


def flip_agreement(sentence: Sentence) -> Sentence:
    """The same sentence with its verb (or copula) in the other number: one agreement error."""
    out = list(sentence)
    for i, form in enumerate(out):
        w = LEXICON[form]
        if w.pos in ("verb", "cop"):
            other = PL if w.number == SG else SG
            out[i] = COPULA[other] if w.pos == "cop" else verb(w.lemma, other)
            return tuple(out)
    raise ValueError(f"no verb in {' '.join(sentence)!r}")


def agreement_violations(sentence: Sentence) -> int:
    """How many words of the subject-verb agreement domain disagree with the subject noun.

    The domain is the subject's determiner and the first verb or copula; the subject noun (the
    first noun) sets the number.  A grammatical sentence has 0.
    """
    words = [LEXICON[f] for f in sentence]
    head = next(w for w in words if w.pos == "noun")
    v = next(i for i, w in enumerate(words) if w.pos in ("verb", "cop"))
    domain = [words[0], words[v]]
    return sum(w.number != head.number for w in domain)


def word_forms() -> list[str]:
    """Content words of the lexicon (the sWUGGY-like word list), in a fixed order."""
    return [f for f, w in LEXICON.items() if w.pos in ("noun", "verb", "adj", "attr")]


def nonword(word: str, rng: np.random.Generator) -> str:
    """A phonotactically plausible non-word: one phone replaced by another of its class."""
    for _ in range(100):
        i = int(rng.integers(len(word)))
        cls = next(c for c in (VOWELS, SONORANTS, NOISE_CONSONANTS) if word[i] in c)
        cand = word[:i] + pick(rng, [c for c in cls if c != word[i]]) + word[i + 1 :]
        if cand not in LEXICON:
            return cand
    raise ValueError(f"no non-word found near {word!r}")


def sentence_text(sentence: Sentence) -> str:
    """Phonemic transcription with an English gloss, e.g. `lo kamo se rama (the cow be hungry)`."""
    gloss = " ".join(LEXICON[f].lemma if f in LEXICON else "?" for f in sentence)
    return f"{' '.join(sentence)} ({gloss})"
