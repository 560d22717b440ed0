"""Synthetic audio and a tiny random HuBERT, for tests, the demo and benchmarks (no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tone(
    seconds: float, sample_rate: int = 16000, freq: float = 220.0, seed: int = 0
) -> np.ndarray:
    """A tone with a little noise and a slow chirp, so k-means has structure to find."""
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    rng = np.random.default_rng(seed)
    phase = 2 * np.pi * (freq * t + 40.0 * t * t)
    x = 0.3 * np.sin(phase) + 0.3 * np.sin(2 * np.pi * 3 * freq * t) * (np.sin(3 * t) > 0)
    return (x + 0.03 * rng.standard_normal(n)).astype(np.float32)


def write_audio(
    path: str | Path,
    seconds: float,
    sample_rate: int = 16000,
    channels: int = 1,
    freq: float = 220.0,
    seed: int = 0,
) -> Path:
    """Write a synthetic utterance (format from the suffix: .flac, .wav, .ogg)."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = tone(seconds, sample_rate, freq, seed)
    if channels > 1:
        x = np.stack([x * (1.0 - 0.3 * c) for c in range(channels)], axis=1)
    sf.write(path, x, sample_rate)
    return path


def tiny_hubert(
    out_dir: str | Path, conv_strides: tuple[int, ...] = (5, 8, 8), seed: int = 0
) -> Path:
    """A randomly initialised, tiny HubertModel saved with `save_pretrained` (base-like layout:
    GroupNorm first conv, post-layer-norm encoder).  Strides (5, 8, 8) -> 320 samples -> 50 Hz."""
    import torch
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(seed)
    kernels = tuple(10 if i == 0 else max(2, s) for i, s in enumerate(conv_strides))
    cfg = HubertConfig(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * len(conv_strides),
        conv_stride=conv_strides,
        conv_kernel=kernels,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        feat_extract_norm="group",
        do_stable_layer_norm=False,
    )
    model = HubertModel(cfg).eval()
    model.save_pretrained(out_dir)
    return Path(out_dir)
