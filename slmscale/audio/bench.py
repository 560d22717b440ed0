"""Throughput of the encoder + k-means path on synthetic audio (pure core; `slmscale bench` times it)."""

from __future__ import annotations

import time

import numpy as np

from slmscale.audio.synthetic import tone
from slmscale.audio.unit_encoder import EncoderSpec


def measure_throughput(
    encoder: str | EncoderSpec = "logmel",
    seconds: float = 600.0,
    *,
    utterance_seconds: float = 15.0,
    k: int = 500,
    device: str = "auto",
    warmup: bool = True,
) -> dict:
    """Audio-seconds per wall-second of `UnitEncoder.encode` (features + k-means + dedup).

    `seconds` of synthetic audio in utterances of `utterance_seconds`, random centroids; decoding
    is not included (it runs in parallel CPU tasks in the pipeline)."""
    import torch

    spec = encoder if isinstance(encoder, EncoderSpec) else EncoderSpec(kind=encoder, device=device)
    unit_encoder = spec.build(None)
    centroids = np.random.default_rng(0).standard_normal((k, unit_encoder.encoder.dim))
    unit_encoder = spec.build(centroids.astype(np.float32))
    n = max(1, int(round(seconds / utterance_seconds)))
    waves = [tone(utterance_seconds, freq=120.0 + 7 * i, seed=i) for i in range(n)]
    if warmup:
        unit_encoder.encode(waves[:2])
    sync = torch.cuda.synchronize if unit_encoder.encoder.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    frames = sum(e.n_frames for e in unit_encoder.encode(waves))
    sync()
    wall = time.perf_counter() - t0
    audio = n * utterance_seconds
    return {
        "encoder": unit_encoder.encoder.encoder_id,
        "device": str(unit_encoder.encoder.device),
        "audio_seconds": audio,
        "frames": frames,
        "wall_s": wall,
        "audio_seconds_per_s": audio / wall,
        "audio_hours_per_s": audio / wall / 3600,
        "torch_threads": torch.get_num_threads(),
    }
