"""Frame encoders: waveform -> one feature vector per frame (pure PyTorch, no Ray).

Both encoders are local convolutions at the bottom: frame t of an utterance is computed from
samples [t * stride, t * stride + receptive_field).  That one fact is what the windowing of long
files (`windows.py`) and the batching rely on, so every encoder states `stride` and
`receptive_field`, and `n_frames(n)` = the number of whole receptive fields in n samples.

- `LogMelEncoder`: log-mel filterbanks (torchaudio), 25 ms windows every 10 ms, no weights: the
  GSLM paper's baseline, used by the demo and the tests.  Frames are purely local, so windowed
  and batched results are exactly the full-file result.
- `HubertEncoder`: a transformers `HubertModel` (local directory or Hugging Face id in the local
  cache, loaded offline: `hf_model.py`), features of transformer layer `layer` (textless
  convention: layer 11 of mHuBERT-25Hz = hidden_states[11]).  Its `encoder_id` is a hash of the
  config and weights, so the tokenizer is named by content, not by the spelling of `--model`.
  The frame rate comes from the model's conv strides (640 samples -> 25 Hz for mHuBERT-25Hz).
  Padding never changes an utterance's frames: the first conv's GroupNorm is computed over each
  utterance's own frames, and the transformer gets an attention mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from slmscale.audio.io import SAMPLE_RATE
from slmscale.errors import UserError


def pick_device(device: str = "auto") -> torch.device:
    """`auto` -> CUDA when torch sees a GPU, else CPU (the GPU path falls back cleanly)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: torch sees no CUDA device")
    return torch.device(device)


def pad_batch(waves: list[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D waveforms with zeros into (B, T); also return their lengths."""
    lengths = torch.tensor([w.numel() for w in waves], dtype=torch.long)
    out = torch.zeros(len(waves), int(lengths.max()), dtype=torch.float32)
    for i, w in enumerate(waves):
        out[i, : w.numel()] = w
    return out.to(device, non_blocking=True), lengths.to(device)


PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` -> bf16 autocast on CUDA, fp32 elsewhere.  Part of the tokenizer's identity."""
    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


class FrameEncoder:
    """Common interface: `features(batch, lengths)` -> one (n_frames(len), dim) tensor per row."""

    kind: str
    encoder_id: str
    precision: str = "fp32"
    layer: int | None
    stride: int
    receptive_field: int
    dim: int
    device: torch.device
    sample_rate: int = SAMPLE_RATE

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.stride

    def n_frames(self, n_samples: int) -> int:
        if n_samples < self.receptive_field:
            return 0
        return (n_samples - self.receptive_field) // self.stride + 1

    def features(self, batch: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError


@dataclass(frozen=True)
class LogMelParams:
    n_mels: int = 80
    n_fft: int = 400
    hop: int = 160

    def encoder_id(self) -> str:
        # fp64: features computed in float64 (LogMelEncoder), so not those of earlier versions
        return f"logmel:n_mels={self.n_mels},n_fft={self.n_fft},hop={self.hop},fp64"


class LogMelEncoder(FrameEncoder):
    """Log-mel frames, computed in float64 and returned as float32.

    Why float64: in float32 the STFT's last bits depend on the code path torch's math library
    (MKL) takes on the CPU (AVX-512, AVX2, SSE4.2), k-means training amplifies those bits into
    other centroids, and a few utterances get other units, so the same demo gave other losses on
    another CPU family (issue 27).  In float64 the differences fall below float32's resolution:
    the same centroids and units on every path measured (tests/test_audio_cpu_paths.py).  About
    2x the float32 cost, which only the log-mel encoder (the demo's and tests') pays.
    """

    kind = "logmel"
    layer = None

    def __init__(self, params: LogMelParams = LogMelParams(), device: str = "auto") -> None:
        import torchaudio

        self.params = params
        self.encoder_id = params.encoder_id()
        self.stride, self.receptive_field, self.dim = params.hop, params.n_fft, params.n_mels
        self.device = pick_device(device)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE,
            n_fft=params.n_fft,
            hop_length=params.hop,
            n_mels=params.n_mels,
            center=False,
            power=2.0,
        ).to(self.device, dtype=torch.float64)

    @torch.inference_mode()
    def features(self, batch: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        spec = torch.log(self.mel(batch.double()) + 1e-6).transpose(1, 2)  # (B, F, n_mels)
        return [spec[i, : self.n_frames(int(n))].float() for i, n in enumerate(lengths.tolist())]


def conv_geometry(kernels: list[int], strides: list[int]) -> tuple[int, int]:
    """(receptive field, total stride) in samples of a stack of valid 1-D convolutions."""
    field, jump = 1, 1
    for k, s in zip(kernels, strides, strict=True):
        field += (k - 1) * jump
        jump *= s
    return field, jump


class HubertEncoder(FrameEncoder):
    kind = "hubert"

    def __init__(
        self,
        model_id: str,
        layer: int = 11,
        device: str = "auto",
        *,
        allow_download: bool = False,
        precision: str = "auto",
    ) -> None:
        from slmscale.audio.hf_model import resolve_model

        source = resolve_model(model_id, allow_download)
        from transformers import HubertModel

        try:
            model = HubertModel.from_pretrained(source, local_files_only=not allow_download)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"--model {model_id}: cannot load a HubertModel ({first})") from None
        cfg = model.config
        if not 0 <= layer <= cfg.num_hidden_layers:
            raise UserError(
                f"--layer {layer}: {model_id} has layers 0..{cfg.num_hidden_layers} (0 = input)"
            )
        self.device = pick_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.model = model.eval().to(self.device)
        self.cfg, self.layer, self.model_id = cfg, layer, model_id
        self._encoder_id: str | None = None
        self.receptive_field, self.stride = conv_geometry(
            list(cfg.conv_kernel), list(cfg.conv_stride)
        )
        self.dim = cfg.hidden_size

    @property
    def encoder_id(self) -> str:
        """`hubert:<sha256 of config + weights, 16 hex>`, computed once, on first use."""
        if self._encoder_id is None:
            from slmscale.audio.hf_model import content_digest

            self._encoder_id = f"hubert:{content_digest(self.model)[:16]}"
        return self._encoder_id

    def _conv_features(self, batch: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The conv feature encoder, with the first layer's GroupNorm over each row's own frames."""
        h = batch[:, None]
        for i, conv in enumerate(self.model.feature_extractor.conv_layers):
            if i == 0 and isinstance(getattr(conv, "layer_norm", None), torch.nn.GroupNorm):
                h = conv.conv(h)
                n = (lengths - self.cfg.conv_kernel[0]) // self.cfg.conv_stride[0] + 1
                mask = (torch.arange(h.shape[-1], device=h.device)[None] < n[:, None])[:, None]
                count = n.clamp(min=1)[:, None, None].to(h.dtype)
                mean = (h * mask).sum(-1, keepdim=True) / count
                var = (((h - mean) * mask) ** 2).sum(-1, keepdim=True) / count
                norm = conv.layer_norm
                h = (h - mean) / torch.sqrt(var + norm.eps)
                h = h * norm.weight[None, :, None] + norm.bias[None, :, None]
                h = conv.activation(h)
            else:
                h = conv(h)
        return h.transpose(1, 2)

    def _layer_output(self, batch: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        from transformers.masking_utils import create_bidirectional_mask

        n_frames = torch.tensor([self.n_frames(int(n)) for n in lengths.tolist()])
        feats = self._conv_features(batch, lengths)
        frame_mask = torch.arange(feats.shape[1])[None] < n_frames[:, None]
        frame_mask = frame_mask.to(feats.device)
        h = self.model.feature_projection(feats)
        h = h.masked_fill(~frame_mask[..., None], 0.0)
        enc = self.model.encoder
        attn = create_bidirectional_mask(
            config=self.cfg, inputs_embeds=h, attention_mask=frame_mask
        )
        h = h + enc.pos_conv_embed(h)
        stable = self.cfg.do_stable_layer_norm
        if not stable:
            h = enc.layer_norm(h)
        for block in enc.layers[: self.layer]:
            h = block(h, attention_mask=attn)
        if stable and self.layer == self.cfg.num_hidden_layers:
            h = enc.layer_norm(h)
        return h

    @torch.inference_mode()
    def features(self, batch: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        use_bf16 = self.precision == "bf16"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            h = self._layer_output(batch, lengths)
        return [h[i, : self.n_frames(int(n))].float() for i, n in enumerate(lengths.tolist())]


def build_encoder(
    kind: str,
    model: str | None = None,
    layer: int | None = None,
    device: str = "auto",
    *,
    allow_download: bool = False,
    precision: str = "auto",
) -> FrameEncoder:
    """`logmel` (no weights, always fp32) or `hubert` (needs `model`: a local directory or a
    cached HF id)."""
    if kind == "logmel":
        resolve_precision(precision, torch.device("cpu"))  # validate the flag
        return LogMelEncoder(device=device)
    if kind == "hubert":
        if not model:
            raise UserError("--encoder hubert needs --model (a local directory or a HF id)")
        return HubertEncoder(
            model,
            layer=11 if layer is None else layer,
            device=device,
            allow_download=allow_download,
            precision=precision,
        )
    raise UserError(f"--encoder {kind!r}: expected 'logmel' or 'hubert'")


def seconds_to_frames(seconds: float, encoder: FrameEncoder) -> int:
    return max(1, math.ceil(seconds * encoder.frame_rate))
