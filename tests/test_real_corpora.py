"""Issue 17: what a researcher with the real downloads trips on, rebuilt from synthetic audio.

MP3s as LAME/sox write them, truncated files that say what is missing, a missing model that fails
at once, the tokenizer named by its weights (not the spelling of --model), corpus layouts split
by folder, progress during a long file, and memory-sized encoder actors."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from slmscale.audio.io import BadAudio, InputSpec, decode_bytes, find_inputs
from slmscale.audio.kmeans import load_centroids, save_centroids
from slmscale.audio.pipeline import tokenize
from slmscale.audio.synthetic import tiny_hubert, tone, write_audio
from slmscale.audio.unit_encoder import EncoderSpec
from slmscale.errors import UserError
from slmscale.units import check_same_tokenizer, identity_diff, identity_matches, load_meta

REPO = Path(__file__).resolve().parents[1]
HAS_MP3 = "MP3" in sf.available_formats()

# ---- MP3 as LAME and sox write it ----------------------------------------------------------------

_BITRATES = {  # kbps by index, for Layer III
    "1": [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
    "2": [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
}
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mp3_frames(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of every MPEG Layer III frame of a bare stream (no tags)."""
    frames, pos = [], 0
    while pos + 4 <= len(data):
        b1, b2 = data[pos + 1], data[pos + 2]
        assert data[pos] == 0xFF and b1 & 0xE0 == 0xE0, f"lost sync at {pos}"
        version = (b1 >> 3) & 3
        kbps = _BITRATES["1" if version == 3 else "2"][b2 >> 4]
        rate = _RATES[version][(b2 >> 2) & 3]
        size = (144 if version == 3 else 72) * kbps * 1000 // rate + ((b2 >> 1) & 1)
        frames.append((pos, size))
        pos += size
    return frames


def _id3v2(n: int = 2048) -> bytes:
    """An ID3v2 tag (e.g. title and cover art) of `n` zero bytes; its size is syncsafe."""
    return b"ID3\x03\x00\x00" + bytes((n >> s) & 0x7F for s in (21, 14, 7, 0)) + bytes(n)


def mp3_without_length_header(seconds: float = 5.22, sample_rate: int = 16000) -> bytes:
    """An MP3 with no Xing/Info frame and an ID3v2 tag in front, as `lame -t`, sox and many
    rippers write them: libsndfile can only estimate its length, from the byte count and the
    first frame's bitrate."""
    buf = io.BytesIO()
    sf.write(buf, tone(seconds, sample_rate), sample_rate, format="MP3")
    data = buf.getvalue()
    frames = _mp3_frames(data)
    first, size = frames[0]
    assert b"Xing" in data[first : first + size] or b"Info" in data[first : first + size]
    return _id3v2() + data[first + size :]  # drop the Xing/Info frame: no stated length left


@pytest.mark.skipif(not HAS_MP3, reason="this libsndfile has no MP3 support (needs >= 1.1)")
def test_mp3_without_xing_header_decodes_whole():
    data = mp3_without_length_header(5.22)
    with sf.SoundFile(io.BytesIO(data)) as f:
        estimated = f.frames
    assert abs(estimated / 16000 - 5.22) > 0.3  # libsndfile's guess is wrong for this file
    wave, sr = decode_bytes(data)
    assert sr == 16000
    assert abs(len(wave) / 16000 - 5.22) < 0.1  # all of it (codec delay and padding aside)
    assert np.isfinite(wave).all() and np.abs(wave[-8000:]).max() > 0.1


@pytest.mark.skipif(not HAS_MP3, reason="this libsndfile has no MP3 support (needs >= 1.1)")
def test_truncated_mp3_is_rejected_with_what_is_missing():
    buf = io.BytesIO()
    sf.write(buf, tone(5.22), 16000, format="MP3")
    data = buf.getvalue()
    with pytest.raises(BadAudio, match=r"Xing/Info header states 83520 frames.*s missing"):
        decode_bytes(data[: len(data) // 2])
    bare = mp3_without_length_header(5.22)
    with pytest.raises(BadAudio, match=r"MP3 stream breaks off after \d+\.\d+ s decoded"):
        decode_bytes(bare[: len(bare) // 2 + 7])


@pytest.mark.skipif(shutil.which("lame") is None, reason="the lame encoder is not installed")
def test_mp3_made_by_the_lame_tool_decodes(tmp_path):
    sf.write(tmp_path / "t.wav", tone(3.0), 16000)
    out = tmp_path / "t.mp3"
    subprocess.run(
        ["lame", "--quiet", "-t", "-b", "64", "--tt", "title", str(tmp_path / "t.wav"), str(out)],
        check=True,
    )
    with sf.SoundFile(out) as f:
        estimated = f.frames
    wave, _ = decode_bytes(out.read_bytes())
    assert estimated != len(wave)  # libsndfile's estimate, not the length
    assert abs(len(wave) / 16000 - 3.0) < 0.2


def test_truncated_wav_says_how_much_is_missing():
    buf = io.BytesIO()
    sf.write(buf, tone(1.0), 16000, format="WAV", subtype="PCM_16")
    data = buf.getvalue()
    cut = data[: 44 + 2 * 9978]  # header + 9978 of 16000 frames
    with pytest.raises(BadAudio) as exc:
        decode_bytes(cut)
    msg = str(exc.value)
    assert "declares 16000 frames" in msg and "holds 9978" in msg and "0.38 s missing" in msg


def test_truncated_flac_says_how_much_is_missing():
    buf = io.BytesIO()
    sf.write(buf, tone(2.0), 16000, format="FLAC")
    data = buf.getvalue()
    with pytest.raises(BadAudio, match=r"truncated or corrupt: .*(32000|missing|FLAC)"):
        decode_bytes(data[: int(len(data) * 0.6)])


def test_ogg_is_not_held_to_an_exact_length():
    buf = io.BytesIO()
    sf.write(buf, tone(1.5), 16000, format="OGG", subtype="VORBIS")
    wave, _ = decode_bytes(buf.getvalue())
    assert abs(len(wave) - 24000) < 1600


# ---- offline-first model loading ---------------------------------------------------------------


def _offline_env(tmp_path) -> dict:
    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    env["HF_HOME"] = str(tmp_path / "hf-home")  # an empty cache
    env["HF_HUB_CACHE"] = str(tmp_path / "hf-home" / "hub")
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # any network attempt would fail (and retry) here
    return env


@pytest.mark.parametrize("model", ["/no/such/model-dir", "./models/x/", "someorg/not-cached"])
def test_missing_model_is_one_line_before_torch_is_imported(tmp_path, model):
    code = (
        "import sys, argparse\n"
        "from slmscale.commands.tokenize import precheck\n"
        "from slmscale.errors import UserError\n"
        "args = argparse.Namespace(encoder='hubert', allow_download=False, input=[], "
        f"model={model!r})\n"
        "try:\n"
        "    precheck(args)\n"
        "except UserError as e:\n"
        "    print(e)\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=_offline_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = r.stdout.strip().splitlines()
    assert lines[-1] == "False False"  # no heavy import, no hub client call: fails at once
    assert len(lines) == 2 and model in lines[0]
    assert "hf download" in lines[0] and "--allow-download" in lines[0]
    if model == "someorg/not-cached":
        assert "not in the local Hugging Face cache" in lines[0]


def test_cli_missing_model_is_one_line_exit_2(tmp_path):
    write_audio(tmp_path / "c" / "a.wav", 0.5)
    km = tmp_path / "km.npy"
    save_centroids(np.zeros((4, 32), np.float32), km)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "slmscale.cli",
            "tokenize",
            "--input",
            f"x={tmp_path / 'c'}",
            "--encoder",
            "hubert",
            "--model",
            "someorg/not-cached",
            "--kmeans",
            str(km),
            "--out",
            str(tmp_path / "o"),
            "--engine",
            "local",
        ],
        cwd=REPO,
        env=_offline_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert "someorg/not-cached" in r.stderr and "Retrying" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_local_model_dir_loads_without_network(tmp_path, monkeypatch):
    model = tiny_hubert(tmp_path / "m")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    enc = EncoderSpec(kind="hubert", model=str(model), layer=2).build().encoder
    assert enc.encoder_id.startswith("hubert:") and str(model) not in enc.encoder_id


# ---- tokenizer identity by content ---------------------------------------------------------------


@pytest.fixture(scope="module")
def hubert_setup(tmp_path_factory):
    """Two tiny HuBERTs (different weights), a k-means file and a short corpus."""
    root = tmp_path_factory.mktemp("ident")
    a = tiny_hubert(root / "models" / "a", seed=0)
    b = tiny_hubert(root / "other" / "a", seed=1)  # different weights, same folder name
    write_audio(root / "corpus" / "u1.wav", 1.0, seed=1)
    write_audio(root / "corpus" / "u2.wav", 0.7, freq=300.0, seed=2)
    feats = EncoderSpec(kind="hubert", model=str(a), layer=2).build().features([tone(2.0)])[0]
    km = root / "km.npy"
    save_centroids(feats.numpy()[::10][:8], km)
    return root, a, b, km


def _tokenize_with(root, model_arg, km, out, cwd, precision="auto"):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        spec = EncoderSpec(kind="hubert", model=model_arg, layer=2, precision=precision)
        tokenize([f"c:dev={root / 'corpus'}"], out, spec, km, engine="local", log=lambda _: None)
    finally:
        os.chdir(old)
    return load_meta(out)


def test_same_weights_under_two_spellings_are_one_tokenizer(hubert_setup, tmp_path):
    root, a, _, km = hubert_setup
    m1 = _tokenize_with(root, "./models/a/", km, tmp_path / "u1", cwd=root)
    m2 = _tokenize_with(root, str(a.resolve()), km, tmp_path / "u2", cwd=tmp_path)
    assert m1["model"] != m2["model"]  # the spellings are kept, for information
    assert m1["encoder_id"] == m2["encoder_id"] and identity_matches(m1, m2)
    check_same_tokenizer({"u1": m1, "u2": m2})  # what the grid calls: accepted
    # a copy of the weights elsewhere is still the same tokenizer
    shutil.copytree(a, tmp_path / "copy")
    m3 = _tokenize_with(root, "copy", km, tmp_path / "u3", cwd=tmp_path)
    assert identity_matches(m1, m3)


def test_different_weights_under_one_name_are_refused(hubert_setup, tmp_path):
    root, _, _, km = hubert_setup
    m1 = _tokenize_with(root, "models/a", km, tmp_path / "u1", cwd=root)
    m2 = _tokenize_with(root, "other/a", km, tmp_path / "u2", cwd=root)
    # make the spelling identical too: the name is the same, the weights are not
    assert Path(m1["model"]).name == Path(m2["model"]).name == "a"
    assert identity_diff(m1, m2) == ["encoder_id"]
    with pytest.raises(UserError, match="different tokenizer.*encoder_id"):
        check_same_tokenizer({"u1": m1, "u2": m2})


def test_precision_is_part_of_the_identity(hubert_setup, tmp_path):
    root, a, _, km = hubert_setup
    fp32 = _tokenize_with(root, str(a), km, tmp_path / "u1", cwd=root, precision="fp32")
    bf16 = _tokenize_with(root, str(a), km, tmp_path / "u2", cwd=root, precision="bf16")
    assert (fp32["precision"], bf16["precision"]) == ("fp32", "bf16")
    assert identity_diff(fp32, bf16) == ["precision"]
    # datasets made before precision was recorded count as fp32
    old = {k: v for k, v in fp32.items() if k != "precision"}
    assert identity_matches(old, fp32)


def test_eval_refuses_benchmark_units_of_other_weights(hubert_setup, tmp_path):
    from slmscale.evaluate.benchmark import _check_tokenizer
    from slmscale.units import tokenizer_fingerprint

    root, _, _, km = hubert_setup
    train = _tokenize_with(root, "models/a", km, tmp_path / "train", cwd=root)
    _tokenize_with(root, "./models/a/", km, tmp_path / "same", cwd=root)
    _tokenize_with(root, "other/a", km, tmp_path / "other", cwd=root)

    class Spec:
        name, split = "sblimp", "dev"

    expected = tokenizer_fingerprint(train)
    for units, ok in (("same", True), ("other", False)):
        spec = Spec()
        spec.units = str(tmp_path / units)
        if ok:
            _check_tokenizer(spec, 8, expected)
        else:
            with pytest.raises(UserError, match="different tokenizer"):
                _check_tokenizer(spec, 8, expected)


def test_truncated_kmeans_bin_with_trust_pickle_is_one_line(tmp_path):
    joblib = pytest.importorskip("joblib")
    from sklearn.cluster import MiniBatchKMeans

    km = MiniBatchKMeans(n_clusters=4, n_init=1, random_state=0).fit(
        np.random.default_rng(0).standard_normal((100, 8))
    )
    joblib.dump(km, tmp_path / "km.bin")
    data = (tmp_path / "km.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as exc:
        load_centroids(tmp_path / "cut.bin", trust_pickle=True)
    assert "cut.bin" in str(exc.value) and "truncated or corrupt" in str(exc.value)
    assert "\n" not in str(exc.value)


# ---- corpus layouts ------------------------------------------------------------------------------


def _splits(items) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for it in items:
        top = it.utterance_id.split("/")[1] if "/" in it.utterance_id else it.utterance_id
        out.setdefault(top, set()).add(it.split)
    return out


def test_librispeech_root_splits_by_folder(tmp_path):
    ls = tmp_path / "LibriSpeech"
    folders = ["train-clean-100", "train-other-500", "dev-clean", "dev-other", "test-clean"]
    for folder in folders:
        for i in range(30 if folder.startswith("train") else 3):
            write_audio(ls / folder / "84" / "121123" / f"84-121123-{i:04d}.flac", 0.05)
    items = find_inputs(InputSpec.parse(f"librispeech={tmp_path}"), test_fraction=0.2)
    by_folder: dict[str, set[str]] = {}
    for it in items:
        by_folder.setdefault(it.utterance_id.split("/")[1], set()).add(it.split)
    assert by_folder["dev-clean"] == {"dev-clean"}
    assert by_folder["dev-other"] == {"dev-other"}
    assert by_folder["test-clean"] == {"test-clean"}
    # training folders keep the held-out hash split, and only train/test
    assert by_folder["train-clean-100"] <= {"train", "test"}
    assert by_folder["train-clean-100"] | by_folder["train-other-500"] == {"train", "test"}
    # the root of the download itself works the same way
    again = find_inputs(InputSpec.parse(f"librispeech={ls}"), test_fraction=0.2)
    assert {i.split for i in again} == {i.split for i in items}
    # pointing at one evaluation folder names its split; SPLIT on the command line still wins
    dev = find_inputs(InputSpec.parse(f"librispeech={ls / 'dev-clean'}"))
    assert {i.split for i in dev} == {"dev-clean"}
    forced = find_inputs(InputSpec.parse(f"librispeech:test={ls / 'dev-clean'}"))
    assert {i.split for i in forced} == {"test"}


def test_zerospeech_and_cloze_audio_go_to_their_benchmark_split(tmp_path):
    zr = tmp_path / "sLM21"
    for task in ("lexical", "syntactic"):
        for split in ("dev", "test"):
            for i in range(3):
                write_audio(zr / task / split / f"{task[0]}{split}{i}.wav", 0.05)
        (zr / task / "dev" / "gold.csv").write_text("filename,correct\n")
    items = find_inputs(InputSpec.parse(f"zr={zr}"))
    for it in items:
        assert it.split == it.utterance_id.split("/")[1], it
    flat = find_inputs(InputSpec.parse(f"swuggy={zr / 'lexical' / 'dev'}"))
    assert {i.split for i in flat} == {"dev"}

    cloze = tmp_path / "sSC"
    for story in range(5):
        write_audio(cloze / f"{story}_correct.wav", 0.05)
        write_audio(cloze / f"{story}_incorrect.wav", 0.05)
    assert {i.split for i in find_inputs(InputSpec.parse(f"story_cloze={cloze}"))} == {"test"}


def test_a_tree_mixing_train_and_test_folders_is_split_by_folder(tmp_path):
    for split in ("train", "test"):
        for i in range(20):
            write_audio(tmp_path / "corpus" / split / f"{split}{i}.wav", 0.05)
    items = find_inputs(InputSpec.parse(f"x={tmp_path / 'corpus'}"), test_fraction=0.5)
    assert {(i.utterance_id.split("/")[0], i.split) for i in items} == {
        ("train", "train"),
        ("test", "test"),
    }
    # a tree with only a train/ folder keeps the hash split (the test loss needs held-out audio)
    only = find_inputs(InputSpec.parse(f"x={tmp_path / 'corpus' / 'train'}"), test_fraction=0.5)
    assert {i.split for i in only} == {"train", "test"}


# ---- progress in audio-seconds -------------------------------------------------------------------


def test_progress_events_arrive_during_a_long_file(tmp_path):
    write_audio(tmp_path / "c" / "long.flac", 120.0)
    km = tmp_path / "km.npy"
    save_centroids(np.random.default_rng(0).standard_normal((8, 80)).astype(np.float32), km)
    events: list[float] = []
    tokenize(
        [f"x:train={tmp_path / 'c'}"],
        tmp_path / "o",
        EncoderSpec(window_seconds=10.0),
        km,
        engine="local",
        batch_seconds=20.0,
        on_progress=events.append,
        log=lambda _: None,
    )
    assert len(events) >= 6  # one per encoder batch of <= 20 s, not one per file
    assert max(events) <= 20.0 + 1e-6
    assert sum(events) == pytest.approx(120.0, abs=1e-3)


def test_encode_actor_reports_each_batch_to_the_counter(tmp_path):
    """What the Ray encoder actors send the driver's progress counter (no Ray needed here)."""
    import pyarrow as pa

    from slmscale.audio.pipeline import _EncodeActor

    sent: list[float] = []

    class Method:
        def remote(self, seconds):
            sent.append(seconds)

    class Counter:
        add = Method()

    wave = tone(60.0)
    spec = EncoderSpec(window_seconds=10.0, batch_seconds=20.0)
    actor = _EncodeActor(spec, np.zeros((4, 80), np.float32), True, 1, Counter())
    row = {
        "shard": 0,
        "utterance_id": "u",
        "dataset": "d",
        "split": "train",
        "source": "s",
        "error": "",
        "audio": wave.tobytes(),
    }
    out = actor(pa.Table.from_pylist([row]))
    assert out.num_rows == 1 and len(sent) >= 3
    assert sum(sent) == pytest.approx(60.0, abs=1e-3)


def test_kmeans_bar_counts_what_it_will_process_and_rejects_keep_reasons(tmp_path):
    from slmscale.audio.kmeans import train_kmeans

    for i in range(3):
        write_audio(tmp_path / "c" / f"u{i}.wav", 2.0, freq=150.0 + 100 * i, seed=i)
    (tmp_path / "c" / "bad.wav").write_bytes(b"RIFF....WAVEnot really")
    (tmp_path / "c" / "empty.flac").write_bytes(b"")
    seen: list[float] = []
    s = train_kmeans(
        [f"x:train={tmp_path / 'c'}"],
        EncoderSpec(),
        4,
        tmp_path / "k.npy",
        max_frames=10_000,
        on_progress=seen.append,
    )
    # only 6 s of audio exist (600 log-mel frames): the bar's end is what is really there
    assert sum(seen) == pytest.approx(6.0, abs=0.05)
    reasons = dict(s["rejects"])
    assert len(reasons) == 2
    assert reasons[str(tmp_path / "c" / "empty.flac")] == "empty file"
    assert reasons[str(tmp_path / "c" / "bad.wav")]


# ---- memory-sized actors -------------------------------------------------------------------------


def test_hubert_actors_sized_to_memory():
    from types import SimpleNamespace

    from slmscale.audio.sizing import plan_actors
    from slmscale.audio.unit_encoder import GIB, memory_per_actor

    # a stand-in with the real mHuBERT-25Hz conv stack (512 channels, first stride 5), ~95M params
    class Params:
        def parameters(self):
            import torch

            return [torch.empty(0, dtype=torch.float32)] * 0 + [
                SimpleNamespace(numel=lambda: 95_000_000, element_size=lambda: 4)
            ]

    enc = SimpleNamespace(
        model=Params(),
        cfg=SimpleNamespace(conv_stride=(5, 2, 2), conv_dim=(512,) * 3),
        sample_rate=16000,
        frame_rate=25.0,
        receptive_field=400,
    )
    est = memory_per_actor(enc, 200.0)
    assert 3.0 * GIB < est["batch"] < 3.4 * GIB  # the measured 3.2 GB per 200 s batch
    # 200 s batches asked for: 16 CPUs would allow 8 actors, 12 GiB only 2
    big = plan_actors(
        enc, cpus=16, gpus=0, available_bytes=64 * GIB, batch_seconds=200.0, fixed_batch=True
    )
    assert big.num_actors == 8 and big.batch_seconds == 200.0
    small = plan_actors(
        enc, cpus=16, gpus=0, available_bytes=12 * GIB, batch_seconds=200.0, fixed_batch=True
    )
    assert small.num_actors == int(12 * GIB // est["total"]) == 2
    assert "memory allows 2" in small.message and "GiB" in small.message
    assert small.memory_request == int(est["total"])  # what Ray reserves per actor
    # by default CPU actors take 40 s batches (progress every batch; little speed lost)
    auto = plan_actors(enc, cpus=16, gpus=0, available_bytes=12 * GIB)
    assert auto.batch_seconds == 40.0 and auto.num_actors == 6
    # not even one actor fits: the batch is lowered until one does
    tiny = plan_actors(enc, cpus=16, gpus=0, available_bytes=1.8 * GIB, min_batch_seconds=10.0)
    assert tiny.num_actors == 1 and 10.0 <= tiny.batch_seconds < 40.0
    assert memory_per_actor(enc, tiny.batch_seconds)["total"] <= 1.8 * GIB + 1
    fixed = plan_actors(enc, cpus=16, gpus=0, available_bytes=64 * GIB, num_actors=3)
    assert fixed.num_actors == 3
    gpu = plan_actors(enc, cpus=16, gpus=2, available_bytes=8 * GIB)
    assert gpu.num_actors == 2 and gpu.batch_seconds == 200.0  # activations on the GPU


def test_tokenize_prints_the_actor_sizing_under_ray_and_the_split_summary(tmp_path):
    lines: list[str] = []
    write_audio(tmp_path / "c" / "a.wav", 0.5)
    km = tmp_path / "km.npy"
    save_centroids(np.random.default_rng(0).standard_normal((4, 80)).astype(np.float32), km)
    tokenize(
        [f"x:dev={tmp_path / 'c'}"],
        tmp_path / "o",
        EncoderSpec(),
        km,
        engine="local",
        log=lines.append,
    )
    assert lines and "1 inputs (x/dev 1)" in lines[0]
    meta = json.loads((tmp_path / "o" / "_meta.json").read_text())
    assert meta["precision"] == "fp32" and meta["encoder_id"].startswith("logmel:")


@pytest.mark.slow
def test_progress_under_ray_counts_audio_seconds_and_sizing_is_printed(tmp_path):
    ray = pytest.importorskip("ray")
    write_audio(tmp_path / "c" / "long.flac", 300.0)
    write_audio(tmp_path / "c" / "short.wav", 2.0)
    km = tmp_path / "km.npy"
    save_centroids(np.random.default_rng(0).standard_normal((8, 80)).astype(np.float32), km)
    events: list[float] = []
    lines: list[str] = []
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        s = tokenize(
            [f"x:train={tmp_path / 'c'}"],
            tmp_path / "o",
            EncoderSpec(window_seconds=10.0),
            km,
            engine="ray",
            batch_seconds=20.0,
            num_gpus=0,
            on_progress=events.append,
            log=lines.append,
        )
    finally:
        ray.shutdown()
    assert s["n_rows"] == 2
    assert events and sum(events) == pytest.approx(302.0, abs=1e-2)  # from the actors' counter
    assert any("encoder actor(s) x" in line and "GiB" in line for line in lines)
    assert load_meta(tmp_path / "o")["precision"] == "fp32"


def test_eval_cli_names_what_differs(hubert_setup, tmp_path):
    from types import SimpleNamespace

    from slmscale.commands.eval import _refuse_other_tokenizers

    root, _, _, km = hubert_setup
    _tokenize_with(root, "models/a", km, tmp_path / "train", cwd=root)
    _tokenize_with(root, "./models/a/", km, tmp_path / "same", cwd=root)
    _tokenize_with(root, "other/a", km, tmp_path / "other", cwd=root)
    train = load_meta(tmp_path / "train")
    same = SimpleNamespace(name="sblimp", units=str(tmp_path / "same"))
    other = SimpleNamespace(name="swuggy", units=str(tmp_path / "other"))
    _refuse_other_tokenizers([same], train, "train")
    with pytest.raises(
        UserError, match=r"swuggy units were made by a different tokenizer.*encoder_id"
    ):
        _refuse_other_tokenizers([same, other], train, "train")
