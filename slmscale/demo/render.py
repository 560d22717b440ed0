"""Phone sequences to 16 kHz audio: a stationary spectral shape per phone, several voices.

Pure core (numpy).  Each phone has a fixed spectral signature, so that log-mel frames of one
phone cluster together and k-means units track phones:
- vowels and sonorants: a harmonic stack at the voice's pitch under a formant envelope (three
  Gaussian bumps; the voice shifts every formant by a factor, as a longer or shorter vocal tract);
- noise consonants: white noise filtered to the phone's band (the same for every voice).

Synthesis is cheap: each (voice, phone) gets one 0.3 s template waveform once; an utterance is
slices of those templates at random offsets, with short fades at the joins, silences between
words and sentences, and mild background noise.  Every duration is drawn first (`plan_segments`),
so the exact length of an utterance is known before any sample is made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slmscale.demo.language import NOISE_CONSONANTS, PHONES, Sentence

SAMPLE_RATE = 16_000
TEMPLATE_SECONDS = 0.3
FADE_SECONDS = 0.005
NOISE_RMS = 0.002

# Formants (Hz) of the voiced phones; noise consonants: (centre, bandwidth) of their band.
FORMANTS: dict[str, tuple[float, float, float]] = {
    "a": (800, 1250, 2600),
    "e": (450, 1950, 2650),
    "i": (290, 2300, 3050),
    "o": (480, 850, 2500),
    "u": (320, 720, 2250),
    "m": (250, 1050, 2150),
    "n": (250, 1650, 2700),
    "l": (380, 1000, 3000),
    "r": (460, 1300, 1650),
}
NOISE_BANDS: dict[str, tuple[float, float]] = {
    "p": (900, 350),
    "t": (4300, 600),
    "k": (2300, 450),
    "s": (6600, 900),
    "f": (3300, 1800),
}
LEVELS = {"vowel": 0.12, "sonorant": 0.06, "noise": 0.035}
# Phone durations (seconds), drawn uniformly per occurrence.  Short and narrow (4-7 log-mel
# frames): each phone gives ~1-2 k-means units with little flicker, so a unit stream carries
# the language rather than duration noise, and an audio hour gives more units (the grid's
# single-epoch budgets are bounded by the corpus's units).
DURATIONS = {"vowel": (0.05, 0.07), "sonorant": (0.04, 0.06), "noise": (0.04, 0.06)}
WORD_GAP = (0.01, 0.03)
SENTENCE_GAP = (0.08, 0.12)
EDGE_SILENCE = (0.03, 0.06)


@dataclass(frozen=True)
class Voice:
    name: str
    f0: float  # pitch, Hz
    formant_scale: float  # vocal-tract factor on every formant


VOICES: tuple[Voice, ...] = (
    Voice("v0", 120.0, 0.98),
    Voice("v1", 130.0, 1.0),
)
# The voices the corpora and the cloze benchmarks are spoken in: one, as the paper's sTinyStories
# has one speaker.  Each voice multiplies the unit sequences a word can give: with four, then two,
# the demo's models were still far from the loss floor at the largest single-epoch budget the
# corpus allows, and Eq. 4 was not identified (docs/demo.md).  The second voice speaks only the
# second copy of each sBLIMP / sWUGGY item, a voice the models never heard (benchmarks.py); it is
# close to the first (f0 130 Hz, formants x1.0), as log-mel units, unlike HuBERT's, do not carry
# across voices far apart (at f0 190 Hz, formants x1.08, its items scored at chance).
SPEAKERS: tuple[Voice, ...] = VOICES[:1]


def phone_class(phone: str) -> str:
    if phone in NOISE_CONSONANTS:
        return "noise"
    return "vowel" if phone in "aeiou" else "sonorant"


def _harmonic_template(phone: str, voice: Voice, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    k = np.arange(1, int(7600 // voice.f0) + 1)
    freqs = k * voice.f0
    env = np.full(freqs.shape, 0.01)
    for i, f in enumerate(FORMANTS[phone]):
        f = f * voice.formant_scale
        env += (0.55**i) * np.exp(-0.5 * ((freqs - f) / (60 + 0.06 * f)) ** 2)
    phases = rng.uniform(0, 2 * np.pi, size=k.size)
    return (env[:, None] * np.sin(2 * np.pi * freqs[:, None] * t[None, :] + phases[:, None])).sum(0)


def _noise_template(phone: str, n: int, rng: np.random.Generator) -> np.ndarray:
    centre, width = NOISE_BANDS[phone]
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    return np.fft.irfft(spec * np.exp(-0.5 * ((freqs - centre) / width) ** 2), n)


class PhoneBank:
    """One template waveform per (voice, phone), scaled to its class's RMS level."""

    def __init__(self, voices: tuple[Voice, ...] = VOICES, seed: int = 0) -> None:
        self.voices = {v.name: v for v in voices}
        n = int(TEMPLATE_SECONDS * SAMPLE_RATE)
        rng = np.random.default_rng([seed, 7])
        self.templates: dict[tuple[str, str], np.ndarray] = {}
        for v in voices:
            for p in PHONES:
                if phone_class(p) == "noise":
                    w = _noise_template(p, n, rng)
                else:
                    w = _harmonic_template(p, v, n, rng)
                w = w * (LEVELS[phone_class(p)] / np.sqrt(np.mean(w**2)))
                self.templates[(v.name, p)] = w.astype(np.float32)


@dataclass(frozen=True)
class Segment:
    phone: str | None  # None: silence
    n_samples: int


def _samples(rng: np.random.Generator, bounds: tuple[float, float]) -> int:
    return int(round(rng.uniform(*bounds) * SAMPLE_RATE))


def plan_segments(sentences: list[Sentence], rng: np.random.Generator) -> list[Segment]:
    """Every phone and pause of an utterance with its drawn length in samples."""
    segs = [Segment(None, _samples(rng, EDGE_SILENCE))]
    for si, sentence in enumerate(sentences):
        if si:
            segs.append(Segment(None, _samples(rng, SENTENCE_GAP)))
        for wi, word in enumerate(sentence):
            if wi:
                segs.append(Segment(None, _samples(rng, WORD_GAP)))
            segs += [Segment(p, _samples(rng, DURATIONS[phone_class(p)])) for p in word]
    segs.append(Segment(None, _samples(rng, EDGE_SILENCE)))
    return segs


def synthesize(segments: list[Segment], voice: str, bank: PhoneBank, seed) -> np.ndarray:
    """float32 audio of exactly sum(segment lengths) samples, in [-1, 1].

    Noise and template offsets come from two generators seeded by `seed`, so two utterances that
    share a first part of their plan (a story with its true or its broken ending) share those
    samples exactly and differ only where their phones do.
    """
    total = sum(s.n_samples for s in segments)
    noise_rng, pick_rng = (np.random.default_rng([*np.atleast_1d(seed), k]) for k in (1, 2))
    out = (noise_rng.standard_normal(total) * NOISE_RMS).astype(np.float32)
    fade = int(FADE_SECONDS * SAMPLE_RATE)
    pos = 0
    for seg in segments:
        if seg.phone is not None:
            tpl = bank.templates[(voice, seg.phone)]
            start = int(pick_rng.integers(0, tpl.size - seg.n_samples + 1))
            piece = tpl[start : start + seg.n_samples] * np.float32(pick_rng.uniform(0.9, 1.1))
            ramp = np.linspace(0.0, 1.0, min(fade, seg.n_samples // 2), dtype=np.float32)
            if ramp.size:
                piece[: ramp.size] *= ramp
                piece[-ramp.size :] *= ramp[::-1]
            out[pos : pos + seg.n_samples] += piece
        pos += seg.n_samples
    return np.clip(out, -1.0, 1.0)


def render(sentences: list[Sentence], voice: str, bank: PhoneBank, seed) -> np.ndarray:
    """Sentences (word forms) spoken by `voice`: the utterance's audio at SAMPLE_RATE."""
    return synthesize(
        plan_segments(sentences, np.random.default_rng([*np.atleast_1d(seed), 0])),
        voice,
        bank,
        seed,
    )
