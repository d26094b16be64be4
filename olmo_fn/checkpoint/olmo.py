"""The original OLMo's parameter layout and model config section, mapped to and from olmo_fn's.

The original fuses q/k/v into `att_proj` (rows: q [d], k [kv*hd], v [kv*hd]) and the SwiGLU input
projections into `ff_proj` (rows: first half = value/"up", second half = gate). olmo_fn keeps them
separate so that tensor parallelism can shard them; this module splits and re-fuses them exactly.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from olmo_fn.config import ModelConfig
from olmo_fn.errors import ConfigError

_BLOCK = re.compile(r"^transformer\.blocks\.(\d+)\.(\w+)\.weight$")
_SIMPLE_FROM_OLMO = {
    "attn_out": "attention.o_proj",
    "ff_out": "mlp.down_proj",
    "attn_norm": "attention_norm",
    "ff_norm": "mlp_norm",
    "q_norm": "attention.q_norm",
    "k_norm": "attention.k_norm",
}
_TOP_FROM_OLMO = {
    "transformer.wte.weight": "embeddings.weight",
    "transformer.ln_f.weight": "lm_head.norm.weight",
    "transformer.ff_out.weight": "lm_head.weight",
}


def from_olmo_state_dict(state_dict: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Original OLMo model state dict -> olmo_fn state dict (fused projections split)."""
    d, kv_width = cfg.d_model, cfg.effective_n_kv_heads * cfg.head_dim
    out: dict[str, torch.Tensor] = {}
    for raw_name, tensor in state_dict.items():
        name = raw_name.replace("_fsdp_wrapped_module.", "")
        if name in _TOP_FROM_OLMO:
            out[_TOP_FROM_OLMO[name]] = tensor
            continue
        match = _BLOCK.match(name)
        if match is None:
            raise ConfigError(f"original OLMo state dict: unexpected parameter {raw_name!r}")
        prefix, kind = f"blocks.{match.group(1)}.", match.group(2)
        if kind == "att_proj":
            q, k, v = tensor.split([d, kv_width, kv_width], dim=0)
            out.update({prefix + f"attention.{n}_proj.weight": t for n, t in zip("qkv", (q, k, v))})
        elif kind == "ff_proj":
            up, gate = tensor.chunk(2, dim=0)
            out[prefix + "mlp.up_proj.weight"], out[prefix + "mlp.gate_proj.weight"] = up, gate
        elif kind in _SIMPLE_FROM_OLMO:
            out[prefix + _SIMPLE_FROM_OLMO[kind] + ".weight"] = tensor
        else:
            raise ConfigError(f"original OLMo state dict: unexpected parameter {raw_name!r}")
    return out


def to_olmo_state_dict(state_dict: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """olmo_fn state dict -> original OLMo names, with att_proj and ff_proj fused again."""
    out: dict[str, torch.Tensor] = {v: state_dict[k] for k, v in _top_to_olmo().items() if k in state_dict}
    simple_to_olmo = {v: k for k, v in _SIMPLE_FROM_OLMO.items()}
    for i in range(cfg.n_layers):
        p, o = f"blocks.{i}.", f"transformer.blocks.{i}."
        out[o + "att_proj.weight"] = torch.cat([state_dict[p + f"attention.{n}_proj.weight"] for n in "qkv"])
        out[o + "ff_proj.weight"] = torch.cat(
            [state_dict[p + "mlp.up_proj.weight"], state_dict[p + "mlp.gate_proj.weight"]]
        )
        for ours, theirs in simple_to_olmo.items():
            if p + ours + ".weight" in state_dict:
                out[o + theirs + ".weight"] = state_dict[p + ours + ".weight"]
    return out


def _top_to_olmo() -> dict[str, str]:
    return {v: k for k, v in _TOP_FROM_OLMO.items()}


def model_config_from_olmo(model: dict[str, Any]) -> ModelConfig:
    """ModelConfig from the `model:` section of an original OLMo config.yaml (absent keys take the original's
    defaults, as its loader fills them)."""
    from olmo_fn.original import model_config_from_original

    return model_config_from_original(model)
