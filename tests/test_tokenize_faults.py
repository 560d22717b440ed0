"""Issue 21, the tokenize part: a full disk, an input with no audio, and duplicate ids that hide
a file's real defect."""

from __future__ import annotations

import errno
import io

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from slmscale import units as units_io
from slmscale.audio.io import InputSpec, find_inputs
from slmscale.audio.kmeans import save_centroids
from slmscale.audio.pipeline import tokenize
from slmscale.audio.synthetic import tone, write_audio
from slmscale.audio.unit_encoder import EncoderSpec
from slmscale.cli import main
from slmscale.errors import UserError


@pytest.fixture
def setup(tmp_path):
    root = tmp_path / "c"
    for i in range(6):
        write_audio(root / f"u{i}.wav", 0.4 + 0.1 * i, freq=150.0 + 50 * i, seed=i)
    km = tmp_path / "km.npy"
    save_centroids(np.random.default_rng(0).standard_normal((6, 80)).astype(np.float32), km)
    return root, km


def _run(root, km, out, **kw):
    return tokenize(
        [f"x:train={root}"],
        out,
        EncoderSpec(),
        km,
        engine="local",
        shard_size=2,
        log=lambda _: None,
        **kw,
    )


def _fill_disk_after(monkeypatch, n_ok: int):
    """Let `n_ok` Parquet writes through, then behave like a full disk: half a file, ENOSPC."""
    real = pq.write_table
    calls = {"n": 0}

    def write_table(table, where, *a, **k):
        calls["n"] += 1
        if calls["n"] > n_ok:
            with open(where, "wb") as f:
                f.write(b"PAR1 half a file")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, where, *a, **k)

    monkeypatch.setattr(units_io.pq, "write_table", write_table)


def test_full_disk_is_one_line_leaves_no_partial_file_and_a_rerun_completes(
    setup, tmp_path, monkeypatch
):
    root, km = setup
    out = tmp_path / "o"
    _fill_disk_after(monkeypatch, 3)  # rejects-0, shard-0, rejects-1, then the disk is full
    with pytest.raises(UserError) as exc:
        _run(root, km, out)
    msg = str(exc.value)
    assert "shard-00001.parquet: no space left on device" in msg
    assert "MB free on" in msg and "needs about" in msg and "\n" not in msg
    assert not list(out.rglob("*.tmp-*"))  # the half-written file was removed
    assert [p.name for p in out.glob("shard-*.parquet")] == ["shard-00000.parquet"]
    pq.read_table(out / "shard-00000.parquet")  # what is there is whole
    monkeypatch.undo()  # space freed
    again = _run(root, km, out)
    assert (again["shards_skipped"], again["shards_written"]) == (1, 2)
    clean = _run(root, km, tmp_path / "clean")
    for name in ("shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"):
        assert pq.read_table(out / name) == pq.read_table(tmp_path / "clean" / name)
    assert again["n_rows"] == clean["n_rows"] == 6


def test_full_disk_from_the_cli_is_exit_2_and_one_line(setup, tmp_path, monkeypatch, capsys):
    root, km = setup
    _fill_disk_after(monkeypatch, 0)
    code = main(
        [
            "tokenize",
            "--input",
            f"x={root}",
            "--kmeans",
            str(km),
            "--out",
            str(tmp_path / "o"),
            "--engine",
            "local",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len([line for line in err if "error:" in line]) == 1
    assert "no space left on device" in err[-1] and "Traceback" not in "\n".join(err)


def test_json_writes_on_a_full_disk_are_one_line_too(tmp_path, monkeypatch):
    def no_space(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(tmp_path), "write_bytes", no_space)
    with pytest.raises(UserError, match="meta.json: no space left on device"):
        units_io.write_json_atomic(tmp_path / "meta.json", {"a": 1})
    assert not list(tmp_path.iterdir())


def test_a_folder_with_no_audio_is_an_error(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "README.txt").write_text("no audio here")
    with pytest.raises(UserError, match=r"--input x=.*: no audio inputs found.*\.flac"):
        find_inputs(InputSpec.parse(f"x={tmp_path}"))
    (tmp_path / "m.csv").write_text("path\n")
    with pytest.raises(UserError, match="no audio inputs found"):
        find_inputs(InputSpec.parse(f"x={tmp_path / 'm.csv'}"))


def test_each_duplicate_keeps_its_own_defect(tmp_path):
    root = tmp_path / "c"
    write_audio(root / "a.flac", 0.5)
    wav = io.BytesIO()
    sf.write(wav, tone(1.0), 16000, format="WAV")
    (root / "a.wav").write_bytes(wav.getvalue()[:2000])  # same id "a" (sorted second), truncated
    write_audio(root / "b.flac", 0.5)
    write_audio(root / "b.wav", 0.5)  # same id "b", and fine
    km = tmp_path / "km.npy"
    save_centroids(np.random.default_rng(0).standard_normal((4, 80)).astype(np.float32), km)
    s = tokenize(
        [f"x:train={root}"], tmp_path / "o", EncoderSpec(), km, engine="local", log=lambda _: None
    )
    assert (s["n_inputs"], s["n_rows"], s["n_rejects"]) == (4, 2, 2)
    rejects = units_io.read_rejects(tmp_path / "o").to_pydict()
    why = dict(zip(rejects["source"], rejects["error"], strict=True))
    assert why[str(root / "a.wav")].startswith("truncated or corrupt: the WAV header declares")
    assert why[str(root / "b.wav")] == (
        f"duplicate utterance_id 'b' in x (already used by {root / 'b.flac'})"
    )


def test_cli_lists_every_reject_with_its_reason(setup, tmp_path, capsys):
    root, km = setup
    (root / "empty.flac").write_bytes(b"")
    (root / "text.wav").write_bytes(b"not audio at all " * 10)
    code = main(
        [
            "tokenize",
            "--input",
            f"x={root}",
            "--kmeans",
            str(km),
            "--out",
            str(tmp_path / "o"),
            "--engine",
            "local",
            "--no-token-store",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0
    assert f"tokenize: rejected {root / 'empty.flac'}: empty file" in err
    assert f"tokenize: rejected {root / 'text.wav'}: not audio" in err
    assert "2 inputs rejected; all listed with their reasons in" in err
