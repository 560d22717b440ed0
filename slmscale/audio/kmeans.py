"""K-means quantizer: load centroids, assign frames on the encoder's device, train new ones.

Centroids are a (K, dim) float32 `.npy`.  The textless/fairseq `.bin` k-means files are pickled
scikit-learn models: unpickling runs arbitrary code, so they load only with `trust_pickle=True`
(`--trust-pickle`).  Training uses scikit-learn's MiniBatchKMeans (k-means++ init) on a sample of
encoder frames.  Pure core: no Ray.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from slmscale.errors import UserError
from slmscale.units import sha256_file, write_bytes_atomic


def load_centroids(path: str | Path, trust_pickle: bool = False) -> np.ndarray:
    """(K, dim) float32 centroids from `.npy`, or from a fairseq `.bin` pickle if trusted."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--kmeans {path}: no such file")
    if path.suffix == ".npy":
        try:
            c = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise UserError(f"--kmeans {path}: not a plain .npy array ({exc})") from None
    elif path.suffix in (".bin", ".pkl", ".joblib"):
        if not trust_pickle:
            raise UserError(
                f"--kmeans {path}: pickled k-means files can run code when loaded; "
                "pass --trust-pickle if you trust its origin, or convert it to .npy"
            )
        import joblib

        try:
            obj = joblib.load(path)
        except Exception as exc:  # truncated, corrupt, or pickled by an incompatible version
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise UserError(
                f"--kmeans {path}: cannot unpickle ({type(exc).__name__}"
                f"{': ' + reason[:160] if reason else ''}); the file is truncated or corrupt, "
                "download or convert it again"
            ) from None
        c = getattr(obj, "cluster_centers_", None)
        if c is None:
            raise UserError(f"--kmeans {path}: the pickle holds no cluster_centers_")
    else:
        raise UserError(f"--kmeans {path}: expected .npy (or a fairseq .bin with --trust-pickle)")
    c = np.asarray(c, dtype=np.float32)
    if c.ndim != 2 or c.shape[0] < 1:
        raise UserError(f"--kmeans {path}: expected a (K, dim) array, got shape {c.shape}")
    if c.shape[0] > 65536:
        raise UserError(f"--kmeans {path}: K={c.shape[0]} does not fit uint16 units")
    return c


def assign(features: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Nearest centroid per frame (squared Euclidean), computed where the tensors live.

    On the CPU in float64: in float32 the distances' last bits depend on the CPU's math-library
    code path, and a frame almost equidistant from two centroids got another unit on another
    CPU family (see LogMelEncoder).  GPUs keep float32 (their HuBERT frames vary more anyway)."""
    if features.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=features.device)
    if features.shape[1] != centroids.shape[1]:
        raise UserError(
            f"k-means dim {centroids.shape[1]} does not match the encoder's {features.shape[1]}"
        )
    dtype = torch.float64 if features.device.type == "cpu" else torch.float32
    f, c = features.to(dtype), centroids.to(dtype)
    dist = (c * c).sum(1)[None, :] - 2.0 * (f @ c.T)
    return dist.argmin(dim=1)


def fit_centroids(frames: np.ndarray, k: int, seed: int = 0, batch_size: int = 4096) -> np.ndarray:
    """Mini-batch k-means++ on (N, dim) frames -> (K, dim) float32 centroids."""
    from sklearn.cluster import MiniBatchKMeans

    if len(frames) < k:
        raise UserError(
            f"--k {k}: only {len(frames)} frames to cluster; use more audio or a smaller K"
        )
    km = MiniBatchKMeans(
        n_clusters=k,
        init="k-means++",
        batch_size=min(batch_size, len(frames)),
        random_state=seed,
        n_init=1,
        max_no_improvement=20,
    )
    km.fit(frames)
    return km.cluster_centers_.astype(np.float32)


def save_centroids(centroids: np.ndarray, out: str | Path) -> str:
    """Write `out` (.npy) atomically, plus `out.sha256`; return the hash."""
    import io

    out = Path(out)
    if out.suffix != ".npy":
        raise UserError(f"--out {out}: centroids are written as .npy")
    buf = io.BytesIO()
    np.save(buf, np.asarray(centroids, dtype=np.float32))
    write_bytes_atomic(out, buf.getvalue())
    digest = sha256_file(out)
    write_bytes_atomic(out.with_name(out.name + ".sha256"), f"{digest}  {out.name}\n".encode())
    return digest


def train_kmeans(
    inputs: list,
    encoder_spec,
    k: int,
    out: str | Path,
    *,
    max_frames: int = 200_000,
    seed: int = 0,
    test_fraction: float = 0.01,
    on_progress=None,
) -> dict:
    """Centroids from a sample of encoder frames of the train split of `inputs` -> `out` (.npy).

    Files are visited in a seeded random order until `max_frames` frames are collected, each cut
    to the frames still wanted before it is encoded.  Progress counts audio-seconds toward what
    will really be processed: the smaller of `max_frames` worth and the train audio there is (from
    file headers).  Bad inputs are skipped, each with its reason in `rejects`.  In-process, no Ray.
    """
    from slmscale.audio.io import BadAudio, InputSpec, decode_item, find_inputs, probe_seconds
    from slmscale.progress import Progress, format_seconds

    specs = [InputSpec.parse(s) if isinstance(s, str) else s for s in inputs]
    items = [it for s in specs for it in find_inputs(s, test_fraction) if it.split == "train"]
    if not items:
        raise UserError("kmeans: no train-split inputs found in --input")
    order = np.random.default_rng(seed).permutation(len(items))
    unit_encoder = encoder_spec.build(None)
    enc = unit_encoder.encoder
    known = [probe_seconds(it) for it in items]
    available = sum(s for s in known if s is not None)
    target = ((max_frames - 1) * enc.stride + enc.receptive_field) / enc.sample_rate
    total = min(target, available) if available > 0 else target
    frames, n_frames, used, seconds = [], 0, 0, 0.0
    rejects: list[tuple[str, str]] = []
    with Progress(total, "kmeans: encoding", " audio", fmt=format_seconds) as progress:

        def advance(step: float) -> None:
            progress.update(step)
            if on_progress is not None:
                on_progress(step)

        for idx in order:
            try:
                wave = decode_item(items[idx])
            except BadAudio as exc:
                rejects.append((items[idx].source, str(exc)))
                progress.update(0, extra=f"{len(rejects)} rejected")
                continue
            want = max_frames - n_frames
            wave = wave[: (want - 1) * enc.stride + enc.receptive_field]
            feats = unit_encoder.features([wave], advance)[0].cpu().numpy()
            take = feats[:want]
            frames.append(take)
            n_frames += len(take)
            seconds += len(wave) / enc.sample_rate
            used += 1
            if n_frames >= max_frames:
                break
    data = np.concatenate(frames) if frames else np.zeros((0, enc.dim))
    centroids = fit_centroids(data, k, seed)
    digest = save_centroids(centroids, out)
    return {
        "path": str(out),
        "sha256": digest,
        "k": k,
        "dim": int(centroids.shape[1]),
        "frames": int(n_frames),
        "seconds": seconds,
        "files": used,
        "rejected": len(rejects),
        "rejects": rejects,
        "encoder_id": enc.encoder_id,
        "frame_rate": enc.frame_rate,
    }
