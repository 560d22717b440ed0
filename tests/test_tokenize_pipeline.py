"""`tokenize` end to end: units dataset contract, rejects accounting, resume, Ray Data, HuBERT."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from slmscale.audio.io import InputSpec, decode_item, find_inputs
from slmscale.audio.kmeans import save_centroids
from slmscale.audio.pipeline import tokenize
from slmscale.audio.synthetic import tiny_hubert, tone, write_audio
from slmscale.audio.unit_encoder import EncoderSpec
from slmscale.cli import main
from slmscale.errors import UserError
from slmscale.units import load_meta, read_rejects, read_units, tokenizer_name

GOOD = {  # name: (seconds, sample rate, channels)
    "spk1/a": (1.2, 16000, 1),
    "spk1/b": (2.5, 22050, 2),
    "spk2/c": (0.4, 8000, 1),
    "spk2/long": (41.0, 16000, 1),
}


def make_corpus(root, bad: bool = True):
    for i, (name, (sec, sr, ch)) in enumerate(GOOD.items()):
        write_audio(root / f"{name}.flac", sec, sr, ch, freq=150.0 + 90 * i, seed=i)
    if not bad:
        return 0
    (root / "bad").mkdir()
    (root / "bad/empty.flac").write_bytes(b"")
    flac = io.BytesIO()
    sf.write(flac, tone(1.0), 16000, format="FLAC")
    (root / "bad/truncated.flac").write_bytes(flac.getvalue()[: len(flac.getvalue()) // 2])
    (root / "bad/text.wav").write_bytes(b"this is not audio " * 20)
    x = tone(0.5)
    x[10] = np.inf
    sf.write(root / "bad/inf.wav", x, 16000, subtype="FLOAT")
    sf.write(root / "bad/short.wav", tone(0.01), 16000)
    (root / "bad/gone.flac").symlink_to(root / "does-not-exist.flac")
    return 6


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    n_bad = make_corpus(root)
    rng = np.random.default_rng(0)
    km = tmp_path / "km.npy"
    save_centroids(rng.standard_normal((20, 80)).astype(np.float32) - 8.0, km)
    return root, km, n_bad


def run_local(root, km, out, **kw):
    return tokenize([f"ls={root}"], out, EncoderSpec(window_seconds=10.0), km, engine="local", **kw)


def test_units_dataset_contract_and_rejects_accounting(corpus, tmp_path):
    root, km, n_bad = corpus
    s = run_local(root, km, tmp_path / "out", shard_size=3, test_fraction=0.3)
    assert (s["n_inputs"], s["n_rows"], s["n_rejects"]) == (len(GOOD) + n_bad, len(GOOD), n_bad)
    reasons = dict(
        zip(
            *(read_rejects(tmp_path / "out").to_pydict()[c] for c in ("source", "error")),
            strict=False,
        )
    )
    by_name = {src.rsplit("/", 1)[-1]: err for src, err in reasons.items()}
    assert by_name["empty.flac"] == "empty file"
    assert by_name["truncated.flac"].startswith("truncated or corrupt")
    assert by_name["text.wav"].startswith("not audio")
    assert by_name["inf.wav"].startswith("non-finite")
    assert by_name["short.wav"].startswith("shorter than one frame")
    assert by_name["gone.flac"].startswith("unreadable path")

    table = read_units(tmp_path / "out")
    assert sorted(table["utterance_id"].to_pylist()) == sorted(GOOD)
    items = {i.utterance_id: i for i in find_inputs(InputSpec("ls", None, str(root)), 0.3)}
    encoder = EncoderSpec().build(np.load(km))
    for row in table.to_pylist():
        wave = decode_item(items[row["utterance_id"]])
        direct = encoder.encode([wave])[0]
        assert row["units"] == direct.units.tolist()
        assert (
            sum(row["durations"])
            == row["n_frames"]
            == direct.n_frames
            == 1 + (len(wave) - 400) // 160
        )
        assert row["seconds"] == pytest.approx(GOOD[row["utterance_id"]][0], abs=1e-3)
        assert row["split"] == items[row["utterance_id"]].split
        assert all(a != b for a, b in zip(row["units"], row["units"][1:], strict=False))

    meta = load_meta(tmp_path / "out")
    assert (meta["encoder"], meta["frame_rate"], meta["sample_rate"], meta["layer"]) == (
        "logmel",
        100.0,
        16000,
        None,
    )
    assert (meta["n_units"], meta["kmeans_k"], meta["dedup"], meta["unigram_sha256"]) == (
        20,
        20,
        True,
        None,
    )
    assert meta["n_inputs"] == meta["n_rejects"] + len(GOOD)
    counts = meta["counts"]["ls"]
    assert sum(c["utterances"] for c in counts.values()) == len(GOOD)
    assert sum(c["units"] for c in counts.values()) == sum(
        len(u) for u in table["units"].to_pylist()
    )
    assert tokenizer_name(meta) == "logmel100hz-k20"


def test_resume_skips_finished_shards(corpus, tmp_path):
    root, km, _ = corpus
    out = tmp_path / "out"
    first = run_local(root, km, out, shard_size=2)
    assert first["shards_written"] == first["shards_total"] == 5
    before = {p.name: pq.read_table(p) for p in out.glob("shard-*.parquet")}
    (out / "shard-00001.parquet").unlink()  # as if the run had crashed before this shard
    again = run_local(root, km, out, shard_size=2)
    assert (again["shards_skipped"], again["shards_written"]) == (4, 1)
    assert {p.name: pq.read_table(p) for p in out.glob("shard-*.parquet")} == before
    assert again["n_rejects"] == first["n_rejects"] and again["n_rows"] == first["n_rows"]
    with pytest.raises(UserError, match="other inputs or with another tokenizer"):
        run_local(root, km, out, shard_size=2, dedup=False)


def test_fixed_split_and_no_dedup(tmp_path):
    root = tmp_path / "c"
    make_corpus(root, bad=False)
    km = tmp_path / "km.npy"
    save_centroids(np.random.default_rng(1).standard_normal((5, 80)).astype(np.float32), km)
    tokenize([f"sblimp:dev={root}"], tmp_path / "o", EncoderSpec(), km, engine="local", dedup=False)
    t = read_units(tmp_path / "o")
    assert set(t["split"].to_pylist()) == {"dev"}
    assert all(
        len(u) == n for u, n in zip(t["units"].to_pylist(), t["n_frames"].to_pylist(), strict=False)
    )


def test_cli_prints_table2_and_accounting(corpus, tmp_path, capsys):
    root, km, n_bad = corpus
    args = [
        "tokenize",
        "--input",
        f"librispeech={root}",
        "--out",
        str(tmp_path / "o"),
        "--kmeans",
        str(km),
        "--engine",
        "local",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "LibriSpeech" in out and "Table 2" in out
    assert f"inputs {len(GOOD) + n_bad} = tokenized {len(GOOD)} + rejected {n_bad}" in out
    assert main(args[:-2] + ["--kmeans", str(tmp_path / "nope.npy")]) == 2


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_pipeline_equals_local_engine(corpus, tmp_path, ray_session):
    root, km, n_bad = corpus
    local = run_local(root, km, tmp_path / "local", shard_size=3)
    remote = tokenize(
        [f"ls={root}"],
        tmp_path / "ray",
        EncoderSpec(window_seconds=10.0),
        km,
        engine="ray",
        shard_size=3,
        num_gpus=0,
        num_actors=2,
        batch_size=3,
    )
    assert (remote["n_rows"], remote["n_rejects"]) == (local["n_rows"], local["n_rejects"])
    for name in sorted(p.name for p in (tmp_path / "local").glob("shard-*.parquet")):
        assert pq.read_table(tmp_path / "ray" / name) == pq.read_table(tmp_path / "local" / name)


@pytest.mark.slow
def test_tiny_hubert_through_ray_data_on_declared_gpu(tmp_path, ray_session):
    root = tmp_path / "c"
    make_corpus(root, bad=False)
    model = tiny_hubert(tmp_path / "hubert")
    spec = EncoderSpec(
        kind="hubert", model=str(model), layer=2, window_seconds=10.0, context_seconds=1.0
    )
    feats = spec.build().features([tone(3.0)])[0].numpy()
    km = tmp_path / "km.npy"
    save_centroids(feats[:: len(feats) // 12][:12], km)
    # num_gpus=1 is scheduled on Ray's declared GPU; torch sees none, so the actor runs on CPU.
    s = tokenize([f"ls={root}"], tmp_path / "o", spec, km, engine="ray", num_gpus=1, batch_size=2)
    assert (s["n_rows"], s["n_rejects"]) == (len(GOOD), 0)
    meta = json.loads((tmp_path / "o/_meta.json").read_text())
    assert (meta["encoder"], meta["layer"], meta["frame_rate"], meta["n_units"]) == (
        "hubert",
        2,
        50.0,
        12,
    )
    local = spec.build(np.load(km))
    items = {i.utterance_id: i for i in find_inputs(InputSpec("ls", None, str(root)))}
    for row in read_units(tmp_path / "o").to_pylist():
        direct = local.encode([decode_item(items[row["utterance_id"]])])[0]
        assert row["units"] == direct.units.tolist() and row["n_frames"] == direct.n_frames
