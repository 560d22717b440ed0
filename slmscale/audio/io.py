"""Audio in, part two: decode an input and say why a bad one is bad.

Pure core (soundfile, numpy, torch/torchaudio): no Ray.  `decode_item` turns an `AudioItem`
(slmscale.audio.inputs, re-exported here) into 16 kHz mono float32 or raises `BadAudio` with the
reason that goes into `_rejects.parquet`.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pyarrow.parquet as pq

from slmscale.audio.inputs import (  # noqa: F401  (re-exported: callers import them from here)
    AUDIO_EXTENSIONS,
    DUPLICATE_PREFIX,
    ID_COLUMNS,
    MANIFEST_EXTENSIONS,
    AudioItem,
    InputSpec,
    find_inputs,
    hash_split,
)

SAMPLE_RATE = 16000


class BadAudio(Exception):
    """An input that cannot become units; its message is the `error` column of rejects.parquet."""


def read_bytes(item: AudioItem, cache: dict | None = None) -> bytes:
    """The encoded bytes of one input.  `cache` keeps the last Parquet row group read."""
    if item.row < 0:
        try:
            with open(item.path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise BadAudio(f"unreadable path: {exc.strerror or exc}") from None
    cache = {} if cache is None else cache
    pf = cache.get(item.path) or pq.ParquetFile(item.path)
    cache[item.path] = pf
    offset = 0
    for rg in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(rg).num_rows
        if item.row < offset + n:
            key = (item.path, rg)
            if key not in cache:
                cache.clear()
                cache[item.path] = pf
                cache[key] = pf.read_row_group(rg, columns=[item.column])[item.column]
            value = cache[key][item.row - offset].as_py()
            break
        offset += n
    else:
        raise BadAudio(f"unreadable path: row {item.row} is not in {item.path}")
    if isinstance(value, dict):
        value = value.get("bytes")
    return value or b""


def _wav_lengths(data: bytes) -> tuple[int, int] | None:
    """(frames the RIFF/WAVE header declares, frames the file holds); None if not a plain WAV.

    libsndfile silently shortens a truncated WAV's frame count to what is there, so only the
    header says that something is missing."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, block_align = 12, 0
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if chunk == b"fmt " and pos + 22 <= len(data):
            block_align = struct.unpack("<H", data[pos + 20 : pos + 22])[0]
        if chunk == b"data":
            if size in (0, 0xFFFFFFFF) or block_align == 0:  # streamed WAV: no stated length
                return None
            held = max(0, len(data) - pos - 8)
            return size // block_align, min(size, held) // block_align
        pos += 8 + size + (size & 1)
    return (1, 0) if block_align else None  # header promises a data chunk that never comes


# Containers whose header states the exact number of frames (MP3 only with a Xing/Info header,
# checked apart).  Elsewhere (MP3 without one, Ogg) libsndfile's frame count is an estimate, and a
# shortfall is not an error.
EXACT_LENGTH_FORMATS = frozenset({"WAV", "WAVEX", "RF64", "W64", "FLAC", "AIFF"})


class _UnboundedLength(io.BytesIO):
    """MP3 bytes whose reported file length is far larger than they are.

    Without a Xing/Info header (LAME `-t`, sox, many streaming rips) libsndfile estimates an MP3's
    length from the file size and the first frame's bitrate, and stops decoding at that estimate:
    a VBR file whose first frame is cheap loses its second half without an error.  Reporting a
    huge length (only to libsndfile's file-length query: seek to the end, then tell) moves the
    estimate beyond the real end, so the decoder reads every frame there is; the length is then
    what was decoded.  Used only when a plain read stopped exactly at the estimate (a read that
    ended short of it already reached the real end): the second pass makes libmpg123 print
    harmless `part2_3_length` notes on stderr while it scans."""

    SLACK = 1 << 40

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self._at_fake_end = False

    def seek(self, offset: int, whence: int = 0) -> int:
        self._at_fake_end = whence == 2 and offset == 0
        return super().seek(offset, whence)

    def tell(self) -> int:
        return super().tell() + (self.SLACK if self._at_fake_end else 0)

    def read(self, size: int | None = -1) -> bytes:
        self._at_fake_end = False
        return super().read(size)


def _mp3_states_length(data: bytes) -> bool:
    """True when the first MPEG frame (after any ID3v2 tag) is a Xing/Info/VBRI length header."""
    start = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        start = 10 + (
            (data[6] & 0x7F) << 21 | (data[7] & 0x7F) << 14 | (data[8] & 0x7F) << 7 | data[9] & 0x7F
        )
    head = data[start : start + 200]
    return any(tag in head for tag in (b"Xing", b"Info", b"VBRI"))


def _read_all(source, sf, block: int | None = None) -> tuple[np.ndarray, int, int, str]:
    """Every frame the decoder yields: in one call, or block by block when the stated length is a
    guess (`block`; soundfile seeks between blocks, which makes libmpg123 print notes).

    A decoder error after some blocks came out means the stream breaks off: `BadAudio` saying
    how much was decoded before the break."""
    with sf.SoundFile(source) as f:
        if block is None:
            return f.read(dtype="float32", always_2d=True), f.frames, f.samplerate, f.format
        parts: list[np.ndarray] = []
        try:
            while len(part := f.read(block, dtype="float32", always_2d=True)):
                parts.append(part)
        except sf.LibsndfileError as exc:
            if not parts:
                raise
            got = sum(len(p) for p in parts) / f.samplerate
            raise BadAudio(
                f"truncated or corrupt: the {f.format} stream breaks off after {got:.2f} s "
                f"decoded ({str(exc).strip()})"
            ) from None
        wave = np.concatenate(parts) if parts else np.zeros((0, f.channels), np.float32)
        return wave, f.frames, f.samplerate, f.format


BLOCK = 8192  # frames per read when the length is unknown

# An MP3 whose Xing/Info header states its length decodes to that length up to the encoder's
# delay and padding (at most two MPEG-1 frames); a larger shortfall is a truncated file.
MP3_LENGTH_SLACK = 2 * 1152


def _missing(frames: int, sr: int) -> str:
    return f"{frames / sr:.2f} s missing"


def decode_bytes(data: bytes, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, int]:
    """Encoded audio -> (mono float32 at `sample_rate`, original rate); `BadAudio` if unusable."""
    import soundfile as sf

    if not data:
        raise BadAudio("empty file")
    stated = True
    try:
        try:
            wave, declared, sr, fmt = _read_all(io.BytesIO(data), sf)
        except sf.LibsndfileError:
            _read_all(io.BytesIO(data), sf, block=BLOCK)  # BadAudio: where the stream breaks off
            raise
        if fmt == "MP3":
            stated = _mp3_states_length(data)
            if not stated and len(wave) >= declared:  # stopped at the guess: maybe more there
                wave, declared, sr, fmt = _read_all(_UnboundedLength(data), sf, block=BLOCK)
    except sf.LibsndfileError as exc:
        msg = str(exc).split(": ", 1)[-1] if "Error opening" in str(exc) else str(exc)
        if "Format not recognised" in msg:
            raise BadAudio("not audio: format not recognised") from None
        raise BadAudio(f"truncated or corrupt: {msg.strip()}") from None
    wav = _wav_lengths(data) if fmt in ("WAV", "WAVEX") else None
    if wav is not None and wav[1] < wav[0]:
        raise BadAudio(
            f"truncated or corrupt: the WAV header declares {wav[0]} frames, the file holds "
            f"{wav[1]} ({_missing(wav[0] - wav[1], sr)})"
        )
    if fmt == "MP3" and stated and len(wave) < declared - MP3_LENGTH_SLACK:
        raise BadAudio(
            f"truncated or corrupt: the MP3's Xing/Info header states {declared} frames, "
            f"{len(wave)} decoded ({_missing(declared - len(wave), sr)})"
        )
    if fmt in EXACT_LENGTH_FORMATS and len(wave) < declared:
        raise BadAudio(
            f"truncated or corrupt: {fmt} stream ends after {len(wave)} of the {declared} frames "
            f"its header declares ({_missing(declared - len(wave), sr)})"
        )
    if len(wave) == 0:
        raise BadAudio(f"truncated or corrupt: no audio frames could be decoded ({fmt})")
    if not np.isfinite(wave).all():
        raise BadAudio("non-finite samples (NaN or inf)")
    mono = wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
    return resample(mono, sr, sample_rate), sr


def probe_seconds(item: AudioItem) -> float | None:
    """Duration from the file header only (no decoding); None when unknown (Parquet rows, bad
    files).  Exact for WAV/FLAC, libsndfile's estimate for MP3/Ogg: good enough for progress."""
    if item.row >= 0 or item.error:
        return None
    import soundfile as sf

    try:
        info = sf.info(item.path)
    except Exception:  # any unreadable input is rejected later, with its reason
        return None
    return info.frames / info.samplerate if info.samplerate else None


def resample(wave: np.ndarray, orig: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling with torchaudio (sinc interpolation); a no-op at the target rate."""
    if orig == target or wave.size == 0:
        return np.ascontiguousarray(wave, dtype=np.float32)
    import torch
    import torchaudio.functional as AF

    out = AF.resample(torch.from_numpy(np.ascontiguousarray(wave)), orig, target)
    return out.numpy().astype(np.float32, copy=False)


def decode_item(item: AudioItem, cache: dict | None = None) -> np.ndarray:
    """One input -> 16 kHz mono float32, or `BadAudio`.

    A duplicate id is decoded first, so a broken duplicate is rejected for what is wrong with it."""
    if item.error:
        if item.error.startswith(DUPLICATE_PREFIX):
            decode_bytes(read_bytes(item, cache))
        raise BadAudio(item.error)
    return decode_bytes(read_bytes(item, cache))[0]
