"""`slmscale kmeans`: trained centroids, their hash, and the pickle guard for fairseq `.bin`."""

from __future__ import annotations

import hashlib

import joblib
import numpy as np
import pytest
from sklearn.cluster import MiniBatchKMeans

from slmscale.audio.kmeans import load_centroids, train_kmeans
from slmscale.audio.synthetic import write_audio
from slmscale.audio.unit_encoder import EncoderSpec
from slmscale.cli import main
from slmscale.errors import UserError


@pytest.fixture
def corpus(tmp_path):
    for i in range(5):
        write_audio(tmp_path / "c" / f"u{i}.wav", 1.0 + i * 0.3, freq=120.0 + 150 * i, seed=i)
    (tmp_path / "c" / "broken.wav").write_bytes(b"nope")
    return tmp_path / "c"


def test_train_writes_npy_and_its_sha256(corpus, tmp_path):
    out = tmp_path / "km.npy"
    s = train_kmeans([f"ls:train={corpus}"], EncoderSpec(), 6, out, max_frames=600, seed=3)
    c = np.load(out)
    assert c.shape == (6, 80) and c.dtype == np.float32
    assert s["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert (tmp_path / "km.npy.sha256").read_text().split()[0] == s["sha256"]
    assert s["frames"] == 600 and s["rejected"] + s["files"] <= 6
    again = train_kmeans(
        [f"ls:train={corpus}"], EncoderSpec(), 6, tmp_path / "k2.npy", max_frames=600, seed=3
    )
    assert again["sha256"] == s["sha256"]  # same seed, same centroids


def test_too_few_frames_is_a_user_error(corpus, tmp_path):
    with pytest.raises(UserError, match="--k 50"):
        train_kmeans([f"ls:train={corpus}"], EncoderSpec(), 50, tmp_path / "k.npy", max_frames=20)


def test_fairseq_bin_needs_trust_pickle(tmp_path):
    km = MiniBatchKMeans(n_clusters=4, n_init=1, random_state=0).fit(
        np.random.default_rng(0).standard_normal((100, 8))
    )
    joblib.dump(km, tmp_path / "km.bin")
    with pytest.raises(UserError, match="--trust-pickle"):
        load_centroids(tmp_path / "km.bin")
    np.testing.assert_allclose(
        load_centroids(tmp_path / "km.bin", trust_pickle=True), km.cluster_centers_, rtol=1e-6
    )


def test_cli_kmeans(corpus, tmp_path, capsys):
    out = tmp_path / "c.npy"
    code = main(
        [
            "kmeans",
            "--input",
            f"ls:train={corpus}",
            "--k",
            "4",
            "--out",
            str(out),
            "--max-frames",
            "5000",
        ]
    )
    assert code == 0 and np.load(out).shape == (4, 80)
    text = capsys.readouterr().out
    assert "sha256" in text and "inputs 6 = tokenized 5 + rejected 1" in text
