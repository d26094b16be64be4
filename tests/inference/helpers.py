"""Tiny random models for the inference tests (OLMo 1, 2 and 3 shapes, with and without GQA / tying)."""

import torch

from olmo_fn.config import ModelConfig
from olmo_fn.model import Transformer, init_weights

BASE = dict(
    d_model=64,
    n_heads=4,
    n_layers=2,
    mlp_hidden_size=256,
    vocab_size=250,
    embedding_size=256,
    eos_token_id=249,
    pad_token_id=1,
    max_sequence_length=96,
)
OLMO1 = dict(layer_norm_type="default", layer_norm_with_affine=False, init_fn="mitchell")
OLMO2 = dict(
    layer_norm_type="rms",
    layer_norm_with_affine=True,
    layer_norm_eps=1e-6,
    attention_layer_norm=True,
    norm_after=True,
    init_fn="normal",
    init_std=0.05,
)
CASES = {
    "olmo2-gqa": dict(**OLMO2, n_kv_heads=2, rope_theta=500_000.0),
    "olmo2-tied": dict(**OLMO2, weight_tying=True, rope_theta=10_000.0),
    "olmo1-clipqkv": dict(**OLMO1, clip_qkv=0.5, rope_theta=10_000.0),
    "olmo1-mqa-tied": dict(**OLMO1, n_kv_heads=1, weight_tying=True, rope_theta=500_000.0),
    # OLMo 3: a window shorter than prompt + new tokens, YaRN on the full layer (sliding layers keep RoPE)
    "olmo3-window-yarn": dict(
        **OLMO2,
        layer_types=("sliding", "full"),
        sliding_window=6,
        rope_theta=10_000.0,
        rope_yarn_factor=8.0,
        rope_yarn_original_max_position=4096,
    ),  # fmt: skip
}


def config(case: str, **overrides) -> ModelConfig:
    return ModelConfig(**{**BASE, **CASES[case], **overrides})


def random_model(cfg: ModelConfig, seed: int = 0) -> Transformer:
    """An eval-mode model with weights large enough that greedy choices are not near-ties."""
    model = Transformer(cfg).eval()
    init_weights(model, cfg, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.2 if "norm" in name else 0.12
            p.copy_((1.0 if "norm" in name else 0.0) + scale * torch.randn(p.shape, generator=gen))
    return model


def prompts(cfg: ModelConfig, lengths=(7, 3, 12, 1), seed: int = 0) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(2, cfg.vocab_size - 1, (n,), generator=gen).tolist() for n in lengths]
