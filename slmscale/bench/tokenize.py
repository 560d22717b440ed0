"""tokenize: audio-hours/s of encoder + k-means (K = 500) + dedup, batched vs one utterance a call.

Log-mel on the CPU; HuBERT-base geometry (transformers `HubertConfig()` defaults, random weights:
speed does not depend on the weights) on the GPU, built with `save_pretrained` into a temporary
directory so it goes through exactly the encoder the pipeline loads.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace

from slmscale.audio.bench import bench_inputs, encode_all, measure_throughput
from slmscale.audio.unit_encoder import EncoderSpec
from slmscale.bench.context import Context, gpu_profile_top, profile_top
from slmscale.bench.results import Figure, judge, not_measured

SECTION = "tokenize"
HUBERT_TARGET = 2.0  # audio-hours/s on one H200
GPU_BATCH_SECONDS = 1000.0
HUBERT_LAYER = 11


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


def hubert_base(out_dir: str, model_config: dict | None = None) -> str:
    """A randomly initialised HubertModel (default config = HuBERT-base) saved in `out_dir`."""
    import torch
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    HubertModel(HubertConfig(**(model_config or {}))).save_pretrained(out_dir)
    return out_dir


def _profile(spec: EncoderSpec, device: str) -> str:
    small = replace(spec, batch_seconds=min(spec.batch_seconds, 200.0))
    run = gpu_profile_top if device.startswith("cuda") else profile_top
    try:
        unit_encoder, waves = bench_inputs(small, 200.0)
        return run(encode_all, unit_encoder, waves)
    except Exception as exc:  # noqa: BLE001 - the figure stands without its profile
        return f"profile failed: {exc}"
