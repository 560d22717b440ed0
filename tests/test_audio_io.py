"""Finding inputs and decoding them: ids, splits, resampling, downmix, and every reject reason."""

from __future__ import annotations

import io
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from slmscale.audio.io import (
    BadAudio,
    InputSpec,
    decode_bytes,
    decode_item,
    find_inputs,
    hash_split,
)
from slmscale.audio.synthetic import tone, write_audio
from slmscale.errors import UserError


def _flac_bytes(seconds=1.0, sr=16000):
    buf = io.BytesIO()
    sf.write(buf, tone(seconds, sr), sr, format="FLAC")
    return buf.getvalue()


def test_tree_ids_are_relative_posix_paths_without_extension(tmp_path):
    write_audio(tmp_path / "84/121123/84-121123-0000.flac", 0.2)
    write_audio(tmp_path / "84/121123/84-121123-0001.wav", 0.2)
    (tmp_path / "84/readme.txt").write_text("not an input")
    items = find_inputs(InputSpec.parse("librispeech:train=" + str(tmp_path)))
    assert [i.utterance_id for i in items] == [
        "84/121123/84-121123-0000",
        "84/121123/84-121123-0001",
    ]
    assert {i.split for i in items} == {"train"} and {i.dataset for i in items} == {"librispeech"}
    assert items[0].source == str(tmp_path / "84/121123/84-121123-0000.flac")


def test_hash_split_is_deterministic_and_about_the_fraction():
    ids = [f"spk/{i}" for i in range(20000)]
    test = [u for u in ids if hash_split(u, 0.01) == "test"]
    assert 140 < len(test) < 260
    assert test == [u for u in ids if hash_split(u, 0.01) == "test"]
    assert all(hash_split(u, 0.0) == "train" for u in ids[:100])


def test_manifest_columns_and_relative_paths(tmp_path):
    write_audio(tmp_path / "a.wav", 0.2)
    (tmp_path / "m.tsv").write_text(
        "path\tutterance_id\tsplit\na.wav\tutt-a\tdev\nmissing.wav\t\t\n"
    )
    items = find_inputs(InputSpec.parse(f"topic={tmp_path / 'm.tsv'}"), test_fraction=0.0)
    assert [(i.utterance_id, i.split) for i in items] == [("missing", "train"), ("utt-a", "dev")]
    assert decode_item(items[1]).shape == (3200,)
    with pytest.raises(BadAudio, match="unreadable path"):
        decode_item(items[0])


def test_parquet_audio_bytes_like_hugging_face(tmp_path):
    audio = pa.array(
        [{"bytes": _flac_bytes(0.5), "path": "x/utt1.flac"}, {"bytes": b"", "path": "utt2.flac"}]
    )
    pq.write_table(pa.table({"audio": audio}), tmp_path / "d.parquet")
    items = find_inputs(InputSpec.parse(f"swuggy:dev={tmp_path / 'd.parquet'}"))
    assert [i.utterance_id for i in items] == ["utt1", "utt2"]
    assert items[0].source.endswith("d.parquet#0")
    assert decode_item(items[0]).shape == (8000,)
    with pytest.raises(BadAudio, match="empty file"):
        decode_item(items[1])


@pytest.mark.parametrize("sr", [8000, 22050, 44100])
def test_other_rates_are_resampled_and_stereo_downmixed(tmp_path, sr):
    t = np.arange(int(1.5 * sr)) / sr
    left = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    sf.write(tmp_path / "s.flac", np.stack([left, 0.2 * left], axis=1), sr)
    wave = decode_item(find_inputs(InputSpec.parse(f"d={tmp_path}"))[0])
    assert wave.dtype == np.float32 and wave.ndim == 1 and len(wave) == 24000
    peak_hz = np.abs(np.fft.rfft(wave)).argmax() * 16000 / len(wave)
    assert abs(peak_hz - 440.0) <= 1.0  # same pitch after resampling
    assert np.abs(wave[2000:-2000]).max() == pytest.approx(
        (0.5 + 0.1) / 2, abs=0.01
    )  # mean of channels


def test_every_bad_kind_is_a_bad_audio_with_its_reason():
    good = _flac_bytes(1.0)
    nan = io.BytesIO()
    x = tone(0.5)
    x[100] = np.nan
    sf.write(nan, x, 16000, format="WAV", subtype="FLOAT")
    wav = io.BytesIO()
    sf.write(wav, tone(1.0), 16000, format="WAV")
    cases = {
        "empty file": b"",
        "not audio": b"hello, this is a text file, not audio at all" * 5,
        "truncated or corrupt": good[: len(good) // 2],
        "non-finite": nan.getvalue(),
    }
    for reason, data in cases.items():
        with pytest.raises(BadAudio, match=reason):
            decode_bytes(data)
    with pytest.raises(BadAudio, match="truncated"):
        decode_bytes(wav.getvalue()[: len(wav.getvalue()) // 2])
    assert decode_bytes(good)[0].shape == (16000,)


def test_bad_input_spec_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="NAME"):
        InputSpec.parse("no-equals-sign")
    with pytest.raises(UserError, match="no such file"):
        find_inputs(InputSpec.parse(f"x={tmp_path / 'nope'}"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read anything")
def test_unreadable_file_permission(tmp_path):
    path = write_audio(tmp_path / "locked.flac", 0.2)
    path.chmod(0)
    with pytest.raises(BadAudio, match="unreadable path"):
        decode_item(find_inputs(InputSpec.parse(f"d={tmp_path}"))[0])
