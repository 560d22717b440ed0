"""Cutting long audio into encoder windows whose frames line up exactly with the full file.

Frame t of a file covers samples [t * stride, t * stride + receptive_field).  A window *owns*
frames [own_start, own_end) and is fed the samples of frames [own_start - context,
own_end + context) (clipped to the file), i.e. samples [first * stride, (last - 1) * stride +
receptive_field).  The encoder then returns exactly `last - first` frames for it, and we keep the
owned ones.  Owned ranges tile 0..n_frames with no gap and no overlap, so no frame is lost or
repeated at a boundary; `context` only gives a transformer (HuBERT) left and right context.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    sample_start: int
    sample_end: int
    keep_start: int  # first owned frame, counted from the window's first frame
    keep_end: int
    frame_start: int  # the window's first owned frame in the file

    @property
    def n_samples(self) -> int:
        return self.sample_end - self.sample_start


def n_frames(n_samples: int, receptive_field: int, stride: int) -> int:
    return 0 if n_samples < receptive_field else (n_samples - receptive_field) // stride + 1


def plan_windows(
    n_samples: int, receptive_field: int, stride: int, window_frames: int, context_frames: int = 0
) -> list[Window]:
    """Windows covering every frame of an `n_samples` file exactly once (see module docstring)."""
    total = n_frames(n_samples, receptive_field, stride)
    if total == 0:
        return []
    if total <= window_frames:
        return [Window(0, n_samples, 0, total, 0)]
    out = []
    for own in range(0, total, window_frames):
        own_end = min(own + window_frames, total)
        first = max(0, own - context_frames)
        last = min(total, own_end + context_frames)
        start = first * stride
        end = (last - 1) * stride + receptive_field
        out.append(Window(start, end, own - first, own_end - first, own))
    return out
