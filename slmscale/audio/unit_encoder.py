"""`UnitEncoder`: waveforms -> deduplicated k-means units with durations.  Pure PyTorch, no Ray.

This is the whole science of stage 1 in one object; the Ray Data pipeline only feeds it batches.
An utterance's units never depend on what else is in the call:
- long files are cut into windows that tile its frames exactly (`windows.py`);
- windows of all utterances are sorted by length and packed into padded batches of at most
  `batch_seconds` of (padded) audio, so similar lengths share a batch and padding stays small;
- each encoder keeps padding out of an utterance's frames (see `encoders.py`);
- k-means assignment runs on the encoder's device over all frames of the call, in fixed-size
  chunks with one copy to the host (not one assignment and copy per utterance); then
  consecutive repeats are removed per utterance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from slmscale.audio.encoders import FrameEncoder, pad_batch, seconds_to_frames
from slmscale.audio.kmeans import assign
from slmscale.audio.windows import Window, plan_windows

MAX_DURATION = np.iinfo(np.uint16).max
# Frames per k-means assignment: bounds the (frames x K) distance matrix.  On a CPU a matrix
# that stays in cache (4096 x 500 floats = 8 MB) was 2x faster than one 65536-frame block.
ASSIGN_CHUNK_FRAMES = {"cpu": 4096, "cuda": 65536}


@dataclass
class Encoded:
    units: np.ndarray  # uint16
    durations: np.ndarray  # uint16, frames per kept unit (sum = n_frames)
    n_frames: int


def run_lengths(units: np.ndarray, dedup: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Remove consecutive repeats, keeping how many frames each kept unit lasted.

    Runs longer than uint16 allows are split, so durations always sum to the frame count."""
    units = np.asarray(units)
    if units.size == 0 or not dedup:
        return units.astype(np.uint16), np.ones(units.size, dtype=np.uint16)
    starts = np.flatnonzero(np.r_[True, units[1:] != units[:-1]])
    lengths = np.diff(np.r_[starts, units.size])
    values = units[starts]
    if lengths.max() > MAX_DURATION:
        reps = -(-lengths // MAX_DURATION)
        values = np.repeat(values, reps)
        lengths = np.concatenate(
            [
                [MAX_DURATION] * (r - 1) + [n - MAX_DURATION * (r - 1)]
                for n, r in zip(lengths, reps, strict=True)
            ]
        )
    return values.astype(np.uint16), lengths.astype(np.uint16)


class UnitEncoder:
    """Frame encoder + k-means centroids + dedup: `encode(waves)` -> one `Encoded` per wave."""

    def __init__(
        self,
        encoder: FrameEncoder,
        centroids: np.ndarray | None = None,
        *,
        dedup: bool = True,
        batch_seconds: float = 200.0,
        window_seconds: float = 30.0,
        context_seconds: float = 2.0,
    ) -> None:
        self.encoder, self.dedup = encoder, dedup
        self.centroids = (
            None if centroids is None else torch.as_tensor(centroids, dtype=torch.float32)
        )
        if self.centroids is not None:
            self.centroids = self.centroids.to(encoder.device)
        self.batch_samples = int(batch_seconds * encoder.sample_rate)
        self.window_frames = seconds_to_frames(window_seconds, encoder)
        # Log-mel frames are local: context would be computed and thrown away.
        self.context_frames = (
            0 if encoder.kind == "logmel" else int(context_seconds * encoder.frame_rate)
        )

    def windows(self, n_samples: int) -> list[Window]:
        e = self.encoder
        return plan_windows(
            n_samples, e.receptive_field, e.stride, self.window_frames, self.context_frames
        )

    def _batches(self, pieces: list[tuple[int, Window]]) -> list[list[int]]:
        """Indices of `pieces`, longest first, packed so padded samples <= batch_samples."""
        order = sorted(range(len(pieces)), key=lambda i: -pieces[i][1].n_samples)
        batches, current = [], []
        for i in order:
            longest = pieces[current[0]][1].n_samples if current else pieces[i][1].n_samples
            if current and longest * (len(current) + 1) > self.batch_samples:
                batches.append(current)
                current = []
            current.append(i)
        return batches + ([current] if current else [])

    def features(
        self, waves: list[np.ndarray], on_progress: Callable[[float], None] | None = None
    ) -> list[torch.Tensor]:
        """(n_frames, dim) features per wave, on the encoder's device.

        `on_progress(seconds)` is called after every encoder batch with the audio it covered
        (summing to the waves' total duration), so a long file reports progress while it runs."""
        pieces = [(u, w) for u, wave in enumerate(waves) for w in self.windows(len(wave))]
        out: list[torch.Tensor | None] = [None] * len(pieces)
        rate = float(self.encoder.sample_rate)
        total = sum(len(w) for w in waves) / rate
        reported = 0.0
        for batch in self._batches(pieces):
            chunk = []
            for i in batch:
                u, w = pieces[i]
                chunk.append(torch.from_numpy(np.asarray(waves[u][w.sample_start : w.sample_end])))
            x, lengths = pad_batch(chunk, self.encoder.device)
            for i, feats in zip(batch, self.encoder.features(x, lengths), strict=True):
                w = pieces[i][1]
                out[i] = feats[w.keep_start : w.keep_end]
            if on_progress is not None:
                owned = sum(pieces[i][1].keep_end - pieces[i][1].keep_start for i in batch)
                step = min(owned * self.encoder.stride / rate, total - reported)
                reported += step
                on_progress(step)
        if on_progress is not None and total > reported:
            on_progress(total - reported)  # tails shorter than a frame, and frameless waves
        per_wave: list[list[torch.Tensor]] = [[] for _ in waves]
        for (u, _), feats in zip(pieces, out, strict=True):
            per_wave[u].append(feats)
        empty = torch.zeros(0, self.encoder.dim, device=self.encoder.device)
        return [(p[0] if len(p) == 1 else torch.cat(p)) if p else empty for p in per_wave]

    def encode(
        self, waves: list[np.ndarray], on_progress: Callable[[float], None] | None = None
    ) -> list[Encoded]:
        if self.centroids is None:
            raise ValueError("UnitEncoder.encode needs centroids")
        if not waves:
            return []
        feats = self.features(waves, on_progress)
        counts = [int(f.shape[0]) for f in feats]
        frames = torch.cat(feats)
        chunk = ASSIGN_CHUNK_FRAMES.get(frames.device.type, 4096)
        units = torch.cat(
            [
                assign(frames[i : i + chunk], self.centroids)
                for i in range(0, max(1, frames.shape[0]), chunk)
            ]
        )
        per_wave = np.split(units.cpu().numpy(), np.cumsum(counts)[:-1])
        results = []
        for u in per_wave:
            values, durations = run_lengths(u, self.dedup)
            results.append(Encoded(values, durations, int(u.size)))
        return results


GIB = 1024**3
# Bytes of activations per second of audio in one batch, per channel of the first conv layer
# (float32): its output is (channels x samples/stride0) and about 2.5 such tensors are alive at
# the peak (conv output, GroupNorm, GELU).  Measured: a 200 s CPU batch through the 512-channel
# stack of HuBERT-base/mHuBERT-25Hz added 3.2 GB = 200 * 16000/5 * 512 * 4 B * 2.5.
PEAK_TENSORS = 2.5
# The actor process itself: torch, torchaudio, pyarrow, Ray's worker (Ray measured 631 MiB for a
# log-mel actor on the 1.2 h espeak-ng run); transformers adds to it for HuBERT.
RUNTIME_BYTES = 1.0 * GIB


def memory_per_actor(encoder: FrameEncoder, batch_seconds: float) -> dict[str, float]:
    """Estimated peak bytes of one encoder actor: runtime + weights + one batch's activations."""
    model = getattr(encoder, "model", None)
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) if model else 0
    cfg = getattr(encoder, "cfg", None)
    if cfg is not None:
        per_second = encoder.sample_rate / cfg.conv_stride[0] * cfg.conv_dim[0] * 4 * PEAK_TENSORS
    else:  # log-mel: the spectrogram of a batch, small
        per_second = encoder.frame_rate * (encoder.receptive_field // 2 + 1) * 4 * PEAK_TENSORS
    return {
        "runtime": RUNTIME_BYTES,
        "weights": float(weights),
        "per_second": float(per_second),
        "batch": float(per_second * batch_seconds),
        "total": RUNTIME_BYTES + weights + per_second * batch_seconds,
    }


@dataclass(frozen=True)
class EncoderSpec:
    """How to build a `UnitEncoder`: picklable, so Ray actors can build their own copy."""

    kind: str = "logmel"
    model: str | None = None
    layer: int | None = None
    device: str = "auto"
    batch_seconds: float = 200.0
    window_seconds: float = 30.0
    context_seconds: float = 2.0
    allow_download: bool = False
    precision: str = "auto"

    def build(self, centroids: np.ndarray | None = None, dedup: bool = True) -> UnitEncoder:
        from slmscale.audio.encoders import build_encoder

        return UnitEncoder(
            build_encoder(
                self.kind,
                self.model,
                self.layer,
                self.device,
                allow_download=self.allow_download,
                precision=self.precision,
            ),
            centroids,
            dedup=dedup,
            batch_seconds=self.batch_seconds,
            window_seconds=self.window_seconds,
            context_seconds=self.context_seconds,
        )
