"""tokenize: audio-hours/s of encoder + k-means (K = 500) + dedup, batched vs one utterance a call.

`measure_throughput` times `UnitEncoder.encode` on synthetic audio (pure core), the function the
section calls and docs/tokenize.md quotes.

Log-mel on the CPU; HuBERT-base geometry (transformers `HubertConfig()` defaults, random weights:
speed does not depend on the weights) on the GPU, built with `save_pretrained` into a temporary
directory so it goes through exactly the encoder the pipeline loads.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace

import numpy as np

from slmscale.audio.synthetic import tone
from slmscale.audio.unit_encoder import EncoderSpec, UnitEncoder
from slmscale.bench.context import N_UNITS, Context, gpu_profile_top, profile_top, sync
from slmscale.bench.results import Figure, judge, not_measured

SECTION = "tokenize"
HUBERT_TARGET = 2.0  # audio-hours/s on one H200
GPU_BATCH_SECONDS = 1000.0
HUBERT_LAYER = 11


UTTERANCE_SECONDS = 15.0


def bench_inputs(
    encoder: str | EncoderSpec = "logmel", seconds: float = 600.0, device: str = "auto"
) -> tuple[UnitEncoder, list[np.ndarray]]:
    """A `UnitEncoder` with K = 500 random centroids and `seconds` of synthetic utterances."""
    spec = encoder if isinstance(encoder, EncoderSpec) else EncoderSpec(kind=encoder, device=device)
    dim = spec.build(None).encoder.dim
    centroids = np.random.default_rng(0).standard_normal((N_UNITS, dim)).astype(np.float32)
    n = max(1, int(round(seconds / UTTERANCE_SECONDS)))
    waves = [tone(UTTERANCE_SECONDS, freq=120.0 + 7 * i, seed=i) for i in range(n)]
    return spec.build(centroids), waves


def encode_all(unit_encoder: UnitEncoder, waves: list[np.ndarray], batched: bool = True) -> int:
    """Encode every wave (in one call, or one call per wave); the number of frames."""
    calls = [waves] if batched else [[w] for w in waves]
    return sum(e.n_frames for call in calls for e in unit_encoder.encode(call))


def measure_throughput(
    encoder: str | EncoderSpec = "logmel",
    seconds: float = 600.0,
    *,
    device: str = "auto",
    batched: bool = True,
) -> dict:
    """Audio-seconds per wall-second of `UnitEncoder.encode` (features + k-means + dedup).

    `seconds` of synthetic audio in 15 s utterances, random centroids, after a warm-up call;
    decoding is not included (it runs in parallel CPU tasks in the pipeline).  `batched=False`
    encodes one utterance per call: the baseline that shows what batching buys."""
    import torch

    unit_encoder, waves = bench_inputs(encoder, seconds, device)
    unit_encoder.encode(waves[:2])  # warm-up
    device = unit_encoder.encoder.device
    sync(device)
    t0 = time.perf_counter()
    frames = encode_all(unit_encoder, waves, batched)
    sync(device)
    wall = time.perf_counter() - t0
    audio = len(waves) * UTTERANCE_SECONDS
    return {
        "encoder": unit_encoder.encoder.encoder_id,
        "device": str(device),
        "audio_seconds": audio,
        "frames": frames,
        "wall_s": wall,
        "audio_seconds_per_s": audio / wall,
        "audio_hours_per_s": audio / wall / 3600,
        "torch_threads": torch.get_num_threads(),
        "batched": batched,
    }


def _pair(spec: EncoderSpec, seconds: float, unbatched_seconds: float, name: str) -> Figure:
    fast = measure_throughput(spec, seconds)
    slow = measure_throughput(spec, unbatched_seconds, batched=False)
    return Figure(
        SECTION,
        name,
        fast["audio_hours_per_s"],
        "audio-h/s",
        slow["audio_hours_per_s"],
        "one utterance per call",
        extra={"batched": fast, "unbatched": slow},
    )


def measure_tokenize(ctx: Context) -> list[Figure]:
    s = ctx.scale
    ctx.step("tokenize: log-mel on CPU")
    logmel = EncoderSpec(kind="logmel", device="cpu")
    rows = [_pair(logmel, s.logmel_seconds, s.unbatched_seconds, "logmel + k-means, CPU")]
    if rows[0].ratio is not None and rows[0].ratio < 1:
        unit_encoder, waves = bench_inputs(logmel, 120.0)
        for batched in (True, False):
            top = profile_top(encode_all, unit_encoder, waves, batched)
            rows[0].add_note(
                f"batching loses here; {'batched' if batched else 'one per call'} {top}"
            )
    name = "HuBERT-base (random weights) + k-means, GPU"
    if not ctx.gpu_device:
        rows.append(
            not_measured(SECTION, name, "audio-h/s", target=f">= {HUBERT_TARGET:g} audio-h/s")
        )
        return rows
    ctx.step("tokenize: HuBERT-base on GPU")
    with tempfile.TemporaryDirectory(prefix="slmscale-bench-hubert-") as tmp:
        spec = EncoderSpec(
            kind="hubert",
            model=hubert_base(tmp),
            layer=HUBERT_LAYER,
            device=ctx.gpu_device,
            batch_seconds=GPU_BATCH_SECONDS,
        )
        fig = _pair(spec, s.hubert_seconds, s.hubert_unbatched_seconds, name)
        judge(fig, "value", ">=", HUBERT_TARGET)
        if fig.met is False:
            fig.add_note(_profile(spec, ctx.gpu_device))
    rows.append(fig)
    return rows


def hubert_base(out_dir: str) -> str:
    """A randomly initialised HuBERT-base (HubertConfig's defaults) saved in `out_dir`."""
    import torch
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    HubertModel(HubertConfig()).save_pretrained(out_dir)
    return out_dir


def _profile(spec: EncoderSpec, device: str) -> str:
    small = replace(spec, batch_seconds=min(spec.batch_seconds, 200.0))
    run = gpu_profile_top if device.startswith("cuda") else profile_top
    try:
        unit_encoder, waves = bench_inputs(small, 200.0)
        return run(encode_all, unit_encoder, waves)
    except Exception as exc:  # noqa: BLE001 - the figure stands without its profile
        return f"profile failed: {exc}"
