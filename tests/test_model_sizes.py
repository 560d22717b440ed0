"""Table 1 sizes: closed-form parameter counts match built models; FLOP accounting."""

from __future__ import annotations

import pytest
import torch

from slmscale.model import (
    PAPER_BATCH_SIZES,
    PAPER_SIZES,
    ModelShape,
    budget_reference_params,
    build_model,
    default_batch_size,
    flops_full,
    flops_full_per_token,
    flops_per_token,
    llama_intermediate_size,
    non_embedding_params,
    special_token_ids,
    total_params,
    training_flops,
    vocab_size,
)


def _count(model: torch.nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight.numel() + model.get_output_embeddings().weight.numel()
    return total - emb, total


@pytest.mark.parametrize(
    "name,expected_millions",
    [("20M", 20.45), ("85M", 84.95), ("155M", 154.17), ("309M", 308.33), ("823M", 822.15)],
)
def test_paper_sizes_match_their_names(name, expected_millions):
    n = non_embedding_params(PAPER_SIZES[name])
    assert n / 1e6 == pytest.approx(expected_millions, abs=0.01)


@pytest.mark.parametrize(
    "shape",
    [
        ModelShape("tiny", n_layers=2, dim=64, n_heads=4),
        ModelShape("gqa", n_layers=3, dim=96, n_heads=6, n_kv_heads=2),
        ModelShape("custom-ffn", n_layers=1, dim=32, n_heads=2, intermediate=100),
    ],
)
def test_closed_form_counts_equal_built_model(shape):
    n_units = 50
    model = build_model(shape, n_units, context=128)
    non_emb, total = _count(model)
    assert non_emb == non_embedding_params(shape)
    assert total == total_params(shape, vocab_size(n_units))


@pytest.mark.slow
def test_closed_form_counts_equal_built_20m():
    shape = PAPER_SIZES["20M"]
    with torch.device("meta"):
        model = build_model(shape, 500, context=2050)
    non_emb, total = _count(model)
    assert non_emb == non_embedding_params(shape)
    assert total == total_params(shape, vocab_size(500))


def test_vocabulary_is_units_plus_specials():
    ids = special_token_ids(500)
    assert ids == {"pad": 500, "bos": 501, "eos": 502}
    assert vocab_size(500) == 503
    cfg = build_model(ModelShape("t", 1, 32, 2), 500, context=64).config
    assert (cfg.vocab_size, cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) == (
        503,
        501,
        502,
        500,
    )


def test_llama_mlp_width_rule():
    assert [llama_intermediate_size(d) for d in (512, 768, 1024, 2048)] == [1536, 2048, 2816, 5632]


def test_flops_per_token_is_6n_plus_attention():
    shape = PAPER_SIZES["85M"]
    n = non_embedding_params(shape)
    assert flops_per_token(shape) == 6 * n
    assert flops_per_token(shape, 2050) == 6 * n + 12 * 12 * 2050 * 768  # nanoGPT, PaLM, torchtitan
    assert training_flops(n, 1e9) == 6 * n * 1e9


def test_full_flop_count_equals_a_hand_count_for_the_20m_model():
    """Porian et al.'s full count for Table 1's 20M (6 layers, d 512, 8 heads), K = 500, T = 2050.

    By hand, per token of training (forward x 3):
    - non-embedding matmuls: 6 layers x (4 x 512^2 attention + 3 x 512 x 1536 SwiGLU) = 20,447,232
      MACs, plus 13 RMSNorm vectors x 512 = 6,656 params: N = 20,453,888 (the paper's 20M), 6N;
    - output layer: 512 x 503 (500 units + PAD/BOS/EOS) = 257,536 MACs: 6 x 257,536;
    - causal attention: position j attends to j + 1 positions, QK^T and AV cost 2 x 2 x 512 x
      (j + 1) forward per layer; the mean of j + 1 over 2,050 positions is 1,025.5, so
      6 layers x 4 x 512 x 1,025.5 x 3 = 37,804,032.
    """
    shape = PAPER_SIZES["20M"]
    n = non_embedding_params(shape)
    assert n == 6 * (4 * 512 * 512 + 3 * 512 * 1536 + 2 * 512) + 512 == 20_453_888
    attention = sum(6 * 2 * 2 * 512 * (j + 1) * 3 for j in range(2050)) / 2050
    assert attention == 37_804_032
    hand = 6 * 20_453_888 + 6 * 512 * 503 + attention
    assert flops_full_per_token(shape, 500, 2050) == hand
    assert flops_full(shape, 500, 2050, 1e9) == hand * 1e9
    # What 6N leaves out in attention is about context / (12 d) of it (0.31 here: the SwiGLU
    # width makes N a little more than 12 d^2 per layer).
    assert attention / (6 * n) == pytest.approx(2050 / (12 * 512), rel=0.1)


def test_paper_batch_sizes_and_budget_reference():
    assert {k: default_batch_size(v) for k, v in PAPER_SIZES.items()} == PAPER_BATCH_SIZES
    assert budget_reference_params(PAPER_SIZES["155M"]) == 155e6
    custom = ModelShape("155M", 2, 64, 4)  # a custom shape that reuses a paper name is not nominal
    assert budget_reference_params(custom) == non_embedding_params(custom)


@pytest.mark.parametrize(
    "device_name,tflops",
    [
        ("NVIDIA H100 80GB HBM3", 989),  # SXM
        ("NVIDIA H100 PCIe", 756),
        ("NVIDIA H100 NVL", 835),
        ("NVIDIA H200", 989),
        ("NVIDIA GH200 480GB", 989),
        ("NVIDIA A100-SXM4-80GB", 312),
        ("NVIDIA A100-PCIE-40GB", 312),
        ("NVIDIA A10G", 70),
        ("NVIDIA A10", 125),
        ("NVIDIA L4", 121),
        ("NVIDIA L40S", 362),
    ],
)
def test_peak_flops_tells_gpu_variants_apart(device_name, tflops):
    from slmscale.train.throughput import peak_flops

    assert peak_flops(device_name) == tflops * 1e12
    assert peak_flops("NVIDIA GeForce GTX 1080") is None and peak_flops(None) is None


def test_mfu_counts_attention_as_12_l_t_d():
    from slmscale.train.throughput import mfu

    shape = PAPER_SIZES["309M"]
    per_token = 6 * non_embedding_params(shape) + 12 * 24 * 2050 * 1024
    assert mfu(1e5, shape, 2050, 989e12) == pytest.approx(1e5 * per_token / 989e12)
