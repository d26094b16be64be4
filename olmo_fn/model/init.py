"""Parameter initialisation as a pure function of (config, seed, parameter name).

Each parameter draws from its own generator, seeded from the run seed and the parameter's name, and is
drawn whole: the full model is the same for every layout (one process, FSDP, TP), and a sharded parameter
just keeps its slice. Schemes and std rules follow the original OLMo (reference §1.3).
"""

from __future__ import annotations

import math
import re
import zlib

import torch
from torch import nn

from olmo_fn.config import ModelConfig

_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def param_seed(seed: int, name: str) -> int:
    """A stable per-parameter seed (independent of Python's hash randomisation and of the layout)."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**63)


def init_std(cfg: ModelConfig, name: str) -> tuple[float, float | None]:
    """(std, cutoff factor or None) of the weight `name` under cfg.init_fn."""
    d = cfg.d_model
    match = _BLOCK.match(name)
    layer = int(match.group(1)) if match else None
    is_out = name.endswith(("o_proj.weight", "down_proj.weight")) and layer is not None
    if cfg.init_fn == "mitchell":
        cutoff = cfg.init_cutoff_factor or 3.0
        if is_out and name.endswith("o_proj.weight"):
            return 1 / math.sqrt(2 * d * (layer + 1)), cutoff
        if is_out:
            return 1 / math.sqrt(2 * cfg.hidden_size * (layer + 1)), cutoff
        return 1 / math.sqrt(d), cutoff
    cutoff = cfg.init_cutoff_factor
    if cfg.init_fn == "normal":
        if name == "embeddings.weight" and cfg.emb_init_std is not None:
            return cfg.emb_init_std, cutoff
        return cfg.init_std, cutoff
    # full_megatron
    if name == "lm_head.weight":
        return 1 / math.sqrt(d), cutoff
    if is_out:
        return cfg.init_std / math.sqrt(2 * cfg.n_layers), cutoff
    return cfg.init_std, cutoff


def init_tensor(cfg: ModelConfig, name: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """The full fp32 initial value of parameter `name`: norms are ones, weights (truncated) normal."""
    if name.endswith("norm.weight"):
        return torch.ones(shape)
    std, cutoff = init_std(cfg, name)
    generator = torch.Generator().manual_seed(param_seed(seed, name))
    out = torch.empty(shape)
    if cutoff is None:
        return out.normal_(0.0, std, generator=generator)
    return nn.init.trunc_normal_(out, 0.0, std, -cutoff * std, cutoff * std, generator=generator)


@torch.no_grad()
def init_weights(model: nn.Module, cfg: ModelConfig, seed: int) -> None:
    """Fill every parameter of `model` (plain or DTensor, on any device) with its initial value.

    A model built on the meta device must be materialised first (`model.to_empty(device=...)`).
    """
    from torch.distributed.tensor import DTensor, distribute_tensor

    for name, param in model.named_parameters():
        full = init_tensor(cfg, _canonical(name), tuple(param.shape), seed)
        if isinstance(param, DTensor):
            local = distribute_tensor(full, param.device_mesh, param.placements, src_data_rank=None)
            param.to_local().copy_(local.to_local())
        else:
            param.copy_(full)


def _canonical(name: str) -> str:
    """Strip wrapper prefixes (compile, activation checkpointing) so names match the plain model's."""
    for prefix in ("_orig_mod.", "_checkpoint_wrapped_module."):
        name = name.replace(prefix, "")
    return name
