"""Encoders, windows and batching: frames line up exactly, and batch-mates never change units."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slmscale.audio.encoders import HubertEncoder, LogMelEncoder, conv_geometry, pad_batch
from slmscale.audio.kmeans import assign
from slmscale.audio.synthetic import tiny_hubert, tone
from slmscale.audio.unit_encoder import UnitEncoder, run_lengths
from slmscale.audio.windows import n_frames, plan_windows


@pytest.fixture(scope="module")
def hubert_dir(tmp_path_factory):
    return tiny_hubert(tmp_path_factory.mktemp("hubert") / "tiny")


@pytest.fixture(scope="module")
def hubert(hubert_dir):
    return HubertEncoder(str(hubert_dir), layer=2, device="cpu")


@pytest.mark.parametrize("n", [0, 399, 400, 401, 559, 560, 16000, 48_123, 160_000])
@pytest.mark.parametrize("window,context", [(7, 0), (50, 3), (1000, 10)])
def test_windows_tile_every_frame_exactly_once(n, window, context):
    field, stride = 400, 160
    wins = plan_windows(n, field, stride, window, context)
    owned = [w.frame_start + j for w in wins for j in range(w.keep_end - w.keep_start)]
    assert owned == list(range(n_frames(n, field, stride)))
    for w in wins:
        assert w.sample_end <= n
        first = w.frame_start - w.keep_start
        assert w.sample_start == first * stride
        # the window's own frame count covers its kept range
        assert n_frames(w.n_samples, field, stride) >= w.keep_end


def test_logmel_windowed_equals_full_file():
    enc = LogMelEncoder(device="cpu")
    wave = tone(7.3, freq=300.0)
    full = enc.features(*pad_batch([torch.from_numpy(wave)], enc.device))[0]
    ue = UnitEncoder(enc, window_seconds=0.5, batch_seconds=2.0)
    windowed = ue.features([wave])[0]
    assert len(ue.windows(len(wave))) > 10
    assert windowed.shape == full.shape == (enc.n_frames(len(wave)), 80)
    torch.testing.assert_close(windowed, full, rtol=1e-4, atol=1e-4)


def test_hubert_frame_rate_comes_from_conv_strides(tmp_path):
    enc25 = HubertEncoder(str(tiny_hubert(tmp_path / "h25", conv_strides=(5, 8, 16))), 1, "cpu")
    assert enc25.stride == 640 and enc25.frame_rate == 25.0
    field, stride = conv_geometry([10, 3, 3, 3, 3, 2, 2], [5, 2, 2, 2, 2, 2, 2])
    assert (field, stride) == (400, 320)  # HuBERT-base: 25 ms receptive field, 20 ms hop


def test_hubert_frame_count_matches_transformers(hubert):
    lengths = torch.tensor([320, 399, 400, 4321, 16000, 33333])
    expected = hubert.model._get_feat_extract_output_lengths(lengths).tolist()
    assert [hubert.n_frames(int(n)) for n in lengths] == [max(0, e) for e in expected]


def test_hubert_layer_matches_transformers_hidden_states(hubert):
    wave = torch.from_numpy(tone(1.3))[None]
    ours = hubert.features(wave, torch.tensor([wave.shape[1]]))[0]
    with torch.inference_mode():
        ref = hubert.model(wave, output_hidden_states=True).hidden_states[hubert.layer][0]
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["logmel", "hubert"])
def test_units_do_not_depend_on_batch_mates(kind, hubert):
    enc = LogMelEncoder(device="cpu") if kind == "logmel" else hubert
    rng = np.random.default_rng(1)
    centroids = rng.standard_normal((16, enc.dim)).astype(np.float32)
    # centroids near real frames, so assignments are not all one unit
    waves = [
        tone(s, freq=f, seed=i) for i, (s, f) in enumerate([(0.7, 200), (3.1, 500), (1.9, 330)])
    ]
    ue = UnitEncoder(enc, centroids, batch_seconds=20.0, window_seconds=30.0)
    feats = torch.cat(ue.features(waves)).cpu().numpy()
    ue.centroids = torch.from_numpy(feats[rng.choice(len(feats), 16, replace=False)])
    batched = ue.encode(waves)
    assert len({u for e in batched for u in e.units.tolist()}) > 2
    for wave, together in zip(waves, batched, strict=True):
        alone = ue.encode([wave])[0]
        assert alone.n_frames == together.n_frames == enc.n_frames(len(wave))
        np.testing.assert_array_equal(alone.units, together.units)
        np.testing.assert_array_equal(alone.durations, together.durations)


def test_hubert_windows_keep_the_full_file_frame_count(hubert):
    wave = tone(4.0)
    full = UnitEncoder(hubert, window_seconds=60.0).features([wave])[0]
    windowed = UnitEncoder(hubert, window_seconds=1.0, context_seconds=0.5).features([wave])[0]
    assert windowed.shape == full.shape == (hubert.n_frames(len(wave)), hubert.dim)


def test_run_lengths_keep_durations():
    units, durations = run_lengths(np.array([3, 3, 3, 1, 1, 7, 3, 3]))
    assert units.tolist() == [3, 1, 7, 3] and durations.tolist() == [3, 2, 1, 2]
    long_units, long_durations = run_lengths(np.zeros(70_000, dtype=np.int64))
    assert long_units.tolist() == [0, 0] and int(long_durations.astype(int).sum()) == 70_000
    kept, ones = run_lengths(np.array([2, 2, 5]), dedup=False)
    assert kept.tolist() == [2, 2, 5] and ones.tolist() == [1, 1, 1]


def test_assign_is_nearest_centroid():
    rng = np.random.default_rng(0)
    x, c = rng.standard_normal((200, 8)), rng.standard_normal((10, 8))
    brute = ((x[:, None] - c[None]) ** 2).sum(-1).argmin(1)
    got = assign(torch.tensor(x, dtype=torch.float32), torch.tensor(c, dtype=torch.float32))
    assert got.tolist() == brute.tolist()
