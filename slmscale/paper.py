"""The seed paper's published values (Cuervo & Marxer 2024, arXiv:2404.00685), for side-by-side output.

Pure data.  Each table is what the paper prints; nothing here is computed.
"""

from __future__ import annotations

# Table 1 (model sizes) is `slmscale.model.PAPER_SIZES`: it builds the models, so it is the one copy.

# Table 2: dataset statistics (hours, HuBERT tokens, unigram tokens).
TABLE2 = [
    {"dataset": "LibriSpeech", "hours": 960, "hubert_tokens": 67e6, "unigram_tokens": 38e6},
    {"dataset": "LibriLight", "hours": 53e3, "hubert_tokens": 3.74e9, "unigram_tokens": 2.11e9},
    {"dataset": "SWC", "hours": 1e3, "hubert_tokens": 32e6, "unigram_tokens": 19e6},
    {"dataset": "Tedlium", "hours": 1.6e3, "hubert_tokens": 0.11e9, "unigram_tokens": 67e6},
    {"dataset": "People", "hours": 7e3, "hubert_tokens": 0.48e9, "unigram_tokens": 0.29e9},
    {"dataset": "VoxPopuli", "hours": 24e3, "hubert_tokens": 1.64e9, "unigram_tokens": 1.08e9},
    {"dataset": "sTinyStories", "hours": 72e3, "hubert_tokens": 4.82e9, "unigram_tokens": 2.71e9},
]
TABLE2_TOTAL = {
    "dataset": "Total",
    "hours": 160e3,
    "hubert_tokens": 10.89e9,
    "unigram_tokens": 6.31e9,
}

# Table 3: downstream power-law exponents gamma_q (Q ~ C^gamma_q).
TABLE3_GAMMA_Q = {
    "text": {"sblimp_acc": 0.066, "topic_cloze_acc": 0.039, "story_cloze_acc": 0.046},
    "speech": {"sblimp_acc": 0.021, "topic_cloze_acc": 0.025, "story_cloze_acc": 0.017},
}

# Table 4: scaling-law constants for Eq. 4 and Eq. 7.
TABLE4 = {
    "text (Muennighoff et al.)": {
        "E": 1.87,
        "A": 521.0,
        "B": 1488.0,
        "alpha": 0.35,
        "beta": 0.35,
        "R_star_N": 5.31,
        "R_star_D": 15.4,
    },
    "speech": {
        "E": 1.73,
        "A": 13.9,
        "B": 39.8,
        "alpha": 0.25,
        "beta": 0.24,
        "R_star_N": 31.0,
        "R_star_D": 25.0,
    },
    "speech (unigram)": {"E": 1.42, "A": 3.85, "B": 8.90, "alpha": 0.15, "beta": 0.16},
}
SPEECH_LAW = TABLE4["speech"]
UNIGRAM_LAW = TABLE4["speech (unigram)"]

# Section 3.1: the Huber delta of the fits.
HUBER_DELTA = 0.03
