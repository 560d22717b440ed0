"""Throughput of the encoder + k-means path on synthetic audio (pure core; `slmscale bench` times it)."""

from __future__ import annotations

import time

import numpy as np

from slmscale.audio.synthetic import tone
from slmscale.audio.unit_encoder import EncoderSpec, UnitEncoder


def bench_inputs(
    encoder: str | EncoderSpec = "logmel",
    seconds: float = 600.0,
    *,
    utterance_seconds: float = 15.0,
    k: int = 500,
    device: str = "auto",
) -> tuple[UnitEncoder, list[np.ndarray]]:
    """A `UnitEncoder` with `k` random centroids and `seconds` of synthetic utterances."""
    spec = encoder if isinstance(encoder, EncoderSpec) else EncoderSpec(kind=encoder, device=device)
    dim = spec.build(None).encoder.dim
    centroids = np.random.default_rng(0).standard_normal((k, dim)).astype(np.float32)
    n = max(1, int(round(seconds / utterance_seconds)))
    waves = [tone(utterance_seconds, freq=120.0 + 7 * i, seed=i) for i in range(n)]
    return spec.build(centroids), waves


def encode_all(unit_encoder: UnitEncoder, waves: list[np.ndarray], batched: bool = True) -> int:
    """Encode every wave (in one call, or one call per wave); the number of frames."""
    calls = [waves] if batched else [[w] for w in waves]
    return sum(e.n_frames for call in calls for e in unit_encoder.encode(call))


def measure_throughput(
    encoder: str | EncoderSpec = "logmel",
    seconds: float = 600.0,
    *,
    utterance_seconds: float = 15.0,
    k: int = 500,
    device: str = "auto",
    warmup: bool = True,
    batched: bool = True,
) -> dict:
    """Audio-seconds per wall-second of `UnitEncoder.encode` (features + k-means + dedup).

    `seconds` of synthetic audio in utterances of `utterance_seconds`, random centroids; decoding
    is not included (it runs in parallel CPU tasks in the pipeline).  `batched=False` encodes one
    utterance per call: the baseline that shows what batching buys."""
    import torch

    unit_encoder, waves = bench_inputs(
        encoder, seconds, utterance_seconds=utterance_seconds, k=k, device=device
    )
    if warmup:
        unit_encoder.encode(waves[:2])
    sync = torch.cuda.synchronize if unit_encoder.encoder.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    frames = encode_all(unit_encoder, waves, batched)
    sync()
    wall = time.perf_counter() - t0
    audio = len(waves) * utterance_seconds
    return {
        "encoder": unit_encoder.encoder.encoder_id,
        "device": str(unit_encoder.encoder.device),
        "audio_seconds": audio,
        "frames": frames,
        "wall_s": wall,
        "audio_seconds_per_s": audio / wall,
        "audio_hours_per_s": audio / wall / 3600,
        "torch_threads": torch.get_num_threads(),
        "batched": batched,
    }
