"""The published OLMo models, one function each, with their exact shapes (reference §1)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from olmo_fn.config import ModelConfig
from olmo_fn.model_config import olmo3_layer_types


def _olmo1(**shape) -> ModelConfig:
    """OLMo 1 family: non-parametric LayerNorm before each sub-layer, RoPE 10000, mitchell init."""
    base = dict(
        layer_norm_type="default",
        layer_norm_with_affine=False,
        layer_norm_eps=1e-5,
        rope_theta=10_000.0,
        vocab_size=50280,
        embedding_size=50304,
        eos_token_id=50279,
        pad_token_id=1,
        max_sequence_length=2048,
        init_fn="mitchell",
    )
    return ModelConfig(**{**base, **shape})


def _olmo2(**shape) -> ModelConfig:
    """OLMo 2 family: RMSNorm on sub-layer outputs, full-width QK-norm, RoPE 500000, normal init."""
    base = dict(
        layer_norm_type="rms",
        layer_norm_with_affine=True,
        layer_norm_eps=1e-6,
        attention_layer_norm=True,
        attention_layer_norm_with_affine=True,
        norm_after=True,
        rope_theta=500_000.0,
        vocab_size=100278,
        embedding_size=100352,
        eos_token_id=100257,
        pad_token_id=100277,
        max_sequence_length=4096,
        init_fn="normal",
        init_std=0.02,
        init_cutoff_factor=3.0,
    )
    return ModelConfig(**{**base, **shape})


def olmo_1b() -> ModelConfig:
    """OLMo-1B: 1,176,764,416 parameters, head tied to the embedding."""
    return _olmo1(d_model=2048, n_heads=16, n_layers=16, mlp_ratio=8, weight_tying=True)


def olmo_7b() -> ModelConfig:
    """OLMo-7B: 6,888,095,744 parameters."""
    return _olmo1(d_model=4096, n_heads=32, n_layers=32, mlp_hidden_size=22016)


def olmo_7b_twin_2t() -> ModelConfig:
    """OLMo-7B-Twin-2T: the OLMo-7B shape, trained on another cluster with another initialisation."""
    return olmo_7b()


def olmo_7b_0424() -> ModelConfig:
    """OLMo-7B-0424 (OLMo 1.7): OLMo-7B with clip_qkv 8 and a 4096-token context."""
    return replace(olmo_7b(), clip_qkv=8.0, max_sequence_length=4096)


def olmo_7b_0724() -> ModelConfig:
    """OLMo-7B-0724: the same architecture as 0424 (the original's configs are byte-identical)."""
    return olmo_7b_0424()


def olmo2_1b() -> ModelConfig:
    """OLMo-2 1B (0425): 1,484,916,736 parameters."""
    return _olmo2(d_model=2048, n_heads=16, n_layers=16, mlp_ratio=8)


def olmo2_7b() -> ModelConfig:
    """OLMo-2 7B (1124): 7,298,617,344 parameters."""
    return _olmo2(d_model=4096, n_heads=32, n_layers=32, mlp_hidden_size=22016)


def olmo2_13b() -> ModelConfig:
    """OLMo-2 13B (1124): 13,716,198,400 parameters."""
    return _olmo2(d_model=5120, n_heads=40, n_layers=40, mlp_hidden_size=27648)


def olmo2_32b() -> ModelConfig:
    """OLMo-2 32B (0325): 40 query heads sharing 8 key/value heads (GQA)."""
    return _olmo2(d_model=5120, n_heads=40, n_kv_heads=8, n_layers=64, mlp_hidden_size=2 * 27648)


def _olmo3(**shape) -> ModelConfig:
    """OLMo 3: OLMo 2 with a 4096-token sliding window on three of every four layers (the fourth, and so the
    last, full) and an 8192-token pretraining context; YaRN (factor 8) on the full layers comes with the
    long-context stage (experiments/olmo3_7b_long_context.py)."""
    return _olmo2(layer_types=olmo3_layer_types(), sliding_window=4096, max_sequence_length=8192, **shape)


def olmo3_7b() -> ModelConfig:
    """OLMo 3 7B: multi-head attention, SwiGLU 11008."""
    return _olmo3(d_model=4096, n_heads=32, n_layers=32, mlp_hidden_size=2 * 11008)


def olmo3_32b() -> ModelConfig:
    """OLMo 3 32B: the OLMo 2 32B shape (40 heads, 8 key/value heads, SwiGLU 27648) with OLMo 3 attention."""
    return _olmo3(d_model=5120, n_heads=40, n_kv_heads=8, n_layers=64, mlp_hidden_size=2 * 27648)


def olmo_tiny() -> ModelConfig:
    """A small OLMo-2-style model that trains on one CPU in minutes (the default corpus' 4096-token BPE)."""
    return _olmo2(
        d_model=256,
        n_heads=4,
        n_layers=4,
        mlp_hidden_size=1536,
        vocab_size=4096,
        embedding_size=4096,
        eos_token_id=0,
        pad_token_id=1,
        max_sequence_length=256,
    )


PRESETS: dict[str, Callable[[], ModelConfig]] = {
    "olmo-1b": olmo_1b,
    "olmo-7b": olmo_7b,
    "olmo-7b-twin-2t": olmo_7b_twin_2t,
    "olmo-7b-0424": olmo_7b_0424,
    "olmo-7b-0724": olmo_7b_0724,
    "olmo2-1b": olmo2_1b,
    "olmo2-7b": olmo2_7b,
    "olmo2-13b": olmo2_13b,
    "olmo2-32b": olmo2_32b,
    "olmo3-7b": olmo3_7b,
    "olmo3-32b": olmo3_32b,
    "olmo-tiny": olmo_tiny,
}
