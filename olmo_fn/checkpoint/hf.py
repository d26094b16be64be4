"""Mapping between olmo_fn and Hugging Face transformers' OlmoForCausalLM / Olmo2ForCausalLM / Olmo3ForCausalLM.

Parameter names map one to one (olmo_fn already keeps q/k/v and up/gate/down separate); the config maps
field by field, with the real rope theta, norm eps, eos and pad ids. OLMo 1 shapes go to `OlmoConfig`,
OLMo 2 shapes to `Olmo2Config`, and OLMo 2 shapes with sliding-window layers or YaRN to `Olmo3Config`
(same parameter names); a hybrid that neither class can express is refused with a clear error.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from olmo_fn.config import ModelConfig
from olmo_fn.errors import ConfigError

_TO_HF = [
    (r"^embeddings\.weight$", "model.embed_tokens.weight"),
    (r"^blocks\.(\d+)\.attention\.([qkvo])_proj\.weight$", r"model.layers.\1.self_attn.\2_proj.weight"),
    (r"^blocks\.(\d+)\.attention\.([qk])_norm\.weight$", r"model.layers.\1.self_attn.\2_norm.weight"),
    (r"^blocks\.(\d+)\.attention_norm\.weight$", r"model.layers.\1.post_attention_layernorm.weight"),
    (r"^blocks\.(\d+)\.mlp_norm\.weight$", r"model.layers.\1.post_feedforward_layernorm.weight"),
    (r"^blocks\.(\d+)\.mlp\.(up|gate|down)_proj\.weight$", r"model.layers.\1.mlp.\2_proj.weight"),
    (r"^lm_head\.norm\.weight$", "model.norm.weight"),
    (r"^lm_head\.weight$", "lm_head.weight"),
]
_FROM_HF = [
    (r"^model\.embed_tokens\.weight$", "embeddings.weight"),
    (r"^model\.layers\.(\d+)\.self_attn\.([qkvo])_proj\.weight$", r"blocks.\1.attention.\2_proj.weight"),
    (r"^model\.layers\.(\d+)\.self_attn\.([qk])_norm\.weight$", r"blocks.\1.attention.\2_norm.weight"),
    (r"^model\.layers\.(\d+)\.post_attention_layernorm\.weight$", r"blocks.\1.attention_norm.weight"),
    (r"^model\.layers\.(\d+)\.post_feedforward_layernorm\.weight$", r"blocks.\1.mlp_norm.weight"),
    (r"^model\.layers\.(\d+)\.mlp\.(up|gate|down)_proj\.weight$", r"blocks.\1.mlp.\2_proj.weight"),
    (r"^model\.norm\.weight$", "lm_head.norm.weight"),
    (r"^lm_head\.weight$", "lm_head.weight"),
]


def _rename(name: str, table: list[tuple[str, str]], what: str) -> str:
    for pattern, replacement in table:
        new, count = re.subn(pattern, replacement, name)
        if count:
            return new
    raise ConfigError(f"{what}: no mapping for parameter {name!r}; is this an OLMo/OLMo 2 checkpoint?")


def to_hf_state_dict(state_dict: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """olmo_fn parameter names -> transformers names (a tied head is written as lm_head.weight too)."""
    family_of(cfg)
    out = {_rename(k, _TO_HF, "to_hf_state_dict"): v for k, v in state_dict.items()}
    if cfg.weight_tying:
        out["lm_head.weight"] = out["model.embed_tokens.weight"]
    return out


def from_hf_state_dict(state_dict: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """transformers names -> olmo_fn names; rotary buffers and a tied lm_head.weight are dropped."""
    family_of(cfg)
    out = {}
    for name, tensor in state_dict.items():
        if name.endswith("rotary_emb.inv_freq") or (cfg.weight_tying and name == "lm_head.weight"):
            continue
        out[_rename(name, _FROM_HF, "from_hf_state_dict")] = tensor
    return out


def family_of(cfg: ModelConfig) -> str:
    """'olmo1' or 'olmo2', or a ConfigError saying why transformers has no class for this config."""
    family = cfg.family
    if family == "hybrid":
        raise ConfigError(
            "model: this norm layout (layer_norm_type, layer_norm_with_affine, norm_after, "
            "attention_layer_norm) matches neither OlmoForCausalLM (OLMo 1) nor Olmo2ForCausalLM (OLMo 2)"
        )
    if family == "olmo1" and cfg.layer_norm_eps != 1e-5:
        raise ConfigError("model.layer_norm_eps: OlmoForCausalLM fixes LayerNorm eps at 1e-5")
    if family == "olmo2" and cfg.clip_qkv is not None:
        raise ConfigError("model.clip_qkv: Olmo2ForCausalLM has no clip_qkv; set it to None")
    return family


def hf_config(cfg: ModelConfig) -> Any:
    """The transformers config (OlmoConfig or Olmo2Config) of the same model."""
    from transformers import Olmo2Config, OlmoConfig

    family = family_of(cfg)
    if family == "olmo1" and is_olmo3(cfg):
        raise ConfigError(
            "model: sliding-window layers and YaRN need the OLMo 2 norm layout (Olmo3ForCausalLM)"
        )
    common = dict(
        vocab_size=cfg.padded_vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.hidden_size,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.effective_n_kv_heads,
        max_position_embeddings=cfg.max_sequence_length,
        pad_token_id=cfg.pad_token_id,
        eos_token_id=cfg.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=cfg.weight_tying,
        rope_parameters={"rope_theta": float(cfg.rope_theta), "rope_type": "default"},
        attention_bias=False,
        hidden_act="silu",
        initializer_range=cfg.init_std,
    )
    if family == "olmo1":
        config = OlmoConfig(**common, clip_qkv=cfg.clip_qkv)
        config.architectures = ["OlmoForCausalLM"]
    elif is_olmo3(cfg):
        config = _olmo3_config(cfg, common)
    else:
        config = Olmo2Config(**common, rms_norm_eps=cfg.layer_norm_eps)
        config.architectures = ["Olmo2ForCausalLM"]
    return config


def is_olmo3(cfg: ModelConfig) -> bool:
    """Whether the config needs Olmo3ForCausalLM: sliding-window layers or YaRN RoPE."""
    return "sliding" in cfg.layer_kinds or cfg.yarn is not None


_HF_KIND = {"full": "full_attention", "sliding": "sliding_attention"}


def _olmo3_config(cfg: ModelConfig, common: dict) -> Any:
    from transformers import Olmo3Config

    plain = {"rope_type": "default", "rope_theta": float(cfg.rope_theta)}
    full = dict(plain)
    if cfg.rope_yarn_factor is not None:
        full = {**plain, "rope_type": "yarn", "factor": cfg.rope_yarn_factor,
                "original_max_position_embeddings": cfg.rope_yarn_original_max_position,
                "beta_fast": cfg.rope_yarn_beta_fast, "beta_slow": cfg.rope_yarn_beta_slow}  # fmt: skip
        if cfg.rope_yarn_attention_factor is not None:  # else transformers derives YaRN's default, as we do
            full["attention_factor"] = cfg.rope_yarn_attention_factor
    common = {**common, "rope_parameters": {"full_attention": full, "sliding_attention": plain}}
    config = Olmo3Config(
        **common,
        rms_norm_eps=cfg.layer_norm_eps,
        sliding_window=cfg.sliding_window or cfg.max_sequence_length,
        layer_types=[_HF_KIND[k] for k in cfg.layer_kinds],
    )
    config.architectures = ["Olmo3ForCausalLM"]
    return config


def _pattern(kinds: tuple[str, ...]) -> tuple[str, ...]:
    """The shortest pattern whose repetition gives the layers' kinds (OLMo 3's 32 -> its 4)."""
    return next(
        kinds[:n] for n in range(1, len(kinds) + 1) if all(k == kinds[i % n] for i, k in enumerate(kinds))
    )


def _olmo3_fields(hf_cfg: Any, theta: float) -> dict[str, Any]:
    """ModelConfig fields of an Olmo3Config's layer kinds, window and per-kind RoPE."""
    kinds = {v: k for k, v in _HF_KIND.items()}
    layer_types = tuple(kinds[t] for t in hf_cfg.layer_types)
    rope = hf_cfg.rope_parameters
    sliding = rope.get("sliding_attention") or {}
    if sliding.get("rope_type", "default") != "default" or sliding.get("rope_theta", theta) != theta:
        raise ConfigError(
            "rope_parameters: olmo_fn's sliding layers use plain RoPE with the full layers' theta"
        )
    full = rope.get("full_attention") or {}
    window = hf_cfg.sliding_window if "sliding" in layer_types else None
    fields: dict[str, Any] = dict(
        layer_types=_pattern(layer_types) if window else None, sliding_window=window
    )
    if full.get("rope_type", "default") == "yarn":
        fields.update(
            rope_yarn_factor=full["factor"],
            rope_yarn_original_max_position=full["original_max_position_embeddings"],
            rope_yarn_beta_fast=full.get("beta_fast") or 32.0,
            rope_yarn_beta_slow=full.get("beta_slow") or 1.0,
            rope_yarn_attention_factor=full.get("attention_factor"),
        )
    elif full.get("rope_type", "default") != "default":
        raise ConfigError(
            f"rope_parameters: rope_type {full['rope_type']!r} is not supported (default, yarn)"
        )
    return fields


def model_config_from_hf(hf_cfg: Any, vocab_size: int | None = None) -> ModelConfig:
    """ModelConfig of a transformers Olmo/Olmo2 config; vocab_size defaults to its (padded) vocab size."""
    model_type = getattr(hf_cfg, "model_type", None)
    if model_type not in ("olmo", "olmo2", "olmo3"):
        raise ConfigError(f"model_type {model_type!r} is not supported; expected 'olmo', 'olmo2' or 'olmo3'")
    if getattr(hf_cfg, "attention_bias", False):
        raise ConfigError("attention_bias: olmo_fn models have no biases; this checkpoint has them")
    rope = getattr(hf_cfg, "rope_parameters", None) or {}
    kv_heads = hf_cfg.num_key_value_heads or hf_cfg.num_attention_heads
    if model_type == "olmo3":
        rope = rope.get("full_attention") or {}
    theta = rope.get("rope_theta", getattr(hf_cfg, "rope_theta", 10_000.0))
    fields: dict[str, Any] = dict(
        d_model=hf_cfg.hidden_size,
        n_heads=hf_cfg.num_attention_heads,
        n_kv_heads=None if kv_heads == hf_cfg.num_attention_heads else kv_heads,
        n_layers=hf_cfg.num_hidden_layers,
        mlp_hidden_size=2 * hf_cfg.intermediate_size,
        rope_theta=float(theta),
        weight_tying=bool(hf_cfg.tie_word_embeddings),
        vocab_size=vocab_size or hf_cfg.vocab_size,
        embedding_size=hf_cfg.vocab_size,
        eos_token_id=hf_cfg.eos_token_id if hf_cfg.eos_token_id is not None else hf_cfg.vocab_size - 1,
        pad_token_id=hf_cfg.pad_token_id if hf_cfg.pad_token_id is not None else 1,
        max_sequence_length=hf_cfg.max_position_embeddings,
    )
    if model_type == "olmo":
        fields.update(layer_norm_type="default", layer_norm_with_affine=False, layer_norm_eps=1e-5)
        fields.update(clip_qkv=hf_cfg.clip_qkv, init_fn="mitchell")
    else:
        fields.update(layer_norm_type="rms", layer_norm_with_affine=True, layer_norm_eps=hf_cfg.rms_norm_eps)
        fields.update(attention_layer_norm=True, attention_layer_norm_with_affine=True, norm_after=True)
        fields.update(init_fn="normal", init_std=hf_cfg.initializer_range, init_cutoff_factor=3.0)
    if model_type == "olmo3":
        fields.update(_olmo3_fields(hf_cfg, float(theta)))
    return ModelConfig(**fields)
