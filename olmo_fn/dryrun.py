"""`--dry_run`: the resolved config, exact parameter count, FLOPs per token and a memory estimate."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from olmo_fn.config import ModelConfig, TrainConfig
from olmo_fn.config_io import dump_yaml
from olmo_fn.model import flops_per_token, num_params


@dataclass
class MemoryEstimate:
    """Bytes per device of what training holds at its peak."""

    parameters: int
    gradients: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer + self.activations


def activation_values_per_token(cfg: ModelConfig) -> int:
    """Values saved for backward per token by one block: norms, q/k/v (before and after norm and RoPE),
    attention output, the SwiGLU inputs and product, residual stream copies."""
    d, h, kv = cfg.d_model, cfg.hidden_size, cfg.effective_n_kv_heads * cfg.head_dim
    attention = 3 * d + 3 * (d + kv) + kv + 2 * d
    mlp = 2 * d + 4 * h
    return attention + mlp


def plan_degrees(cfg: TrainConfig, world_size: int | None = None) -> tuple[int, int, int]:
    """(dp_replicate, dp_shard, tp) the run would use: dp_shard=-1 fills WORLD_SIZE (or 1) in a dry run."""
    par = cfg.parallel
    world = world_size or int(os.environ.get("WORLD_SIZE", "1"))
    shard = par.dp_shard if par.dp_shard != -1 else max(1, world // (par.dp_replicate * par.tp))
    return par.dp_replicate, shard, par.tp


def estimate_memory(
    cfg: TrainConfig, degrees: tuple[int, int, int] = (1, 1, 1), checkpointing: bool | None = None
) -> MemoryEstimate:
    """Per-device memory of training `cfg` on a (dp_replicate, dp_shard, tp) mesh.

    Parameters, gradients and AdamW state (fp32) are split over dp_shard x tp ranks (HSDP replicas hold
    copies); block activations over tp (sequence parallel). With activation checkpointing the checkpointed
    blocks keep only their input, and one block's activations exist again while it is recomputed.
    """
    _, shard_ranks, tp = degrees
    checkpointing = (
        cfg.parallel.activation_checkpointing == "full" if checkpointing is None else checkpointing
    )
    shard = -(-num_params(cfg.model) // (shard_ranks * tp))
    act_bytes = 2 if cfg.precision == "amp_bf16" else 4
    tokens = cfg.device_train_microbatch_size * cfg.model.max_sequence_length
    per_block = activation_values_per_token(cfg.model) * tokens * act_bytes // tp
    head = 2 * min(tokens, 1024) * cfg.model.padded_vocab_size * 4 // tp  # one chunk of fp32 logits + grad
    embedding = tokens * cfg.model.d_model * act_bytes
    blocks = cfg.model.n_layers * per_block
    if checkpointing:
        interval = cfg.parallel.activation_checkpointing_interval
        kept = -(-cfg.model.n_layers // interval)  # blocks 0, interval, 2 * interval, ...
        block_input = tokens * cfg.model.d_model * act_bytes // tp
        blocks = kept * block_input + (cfg.model.n_layers - kept) * per_block + per_block
    return MemoryEstimate(
        parameters=shard * 4, gradients=shard * 4, optimizer=shard * 8, activations=blocks + head + embedding
    )


def _line(label: str, mem: MemoryEstimate) -> str:
    gib = 2**30
    return (
        f"{label}: parameters {mem.parameters / gib:.3f} GiB, gradients {mem.gradients / gib:.3f} GiB, "
        f"optimizer {mem.optimizer / gib:.3f} GiB, activations {mem.activations / gib:.3f} GiB, "
        f"total {mem.total / gib:.3f} GiB"
    )


def dry_run_report(cfg: TrainConfig, world_size: int | None = None) -> str:
    """What --dry_run prints: config, counts, and per-device memory with and without checkpointing."""
    degrees = plan_degrees(cfg, world_size)
    r, s, t = degrees
    lines = [
        dump_yaml(cfg).rstrip(),
        "---",
        f"parameters: {num_params(cfg.model)}",
        f"non-embedding parameters: {num_params(cfg.model, include_embedding=False)}",
        f"flops per token: {flops_per_token(cfg.model)}",
        f"mesh: dp_replicate {r} x dp_shard {s} x tp {t} = {r * s * t} device(s)",
        _line(
            "memory per device (estimate), no activation checkpointing", estimate_memory(cfg, degrees, False)
        ),
        _line(
            "memory per device (estimate), full activation checkpointing", estimate_memory(cfg, degrees, True)
        ),
    ]
    if cfg.model.max_sequence_length > 8192:
        lines.append(_context_parallel_line(cfg, degrees))
    return "\n".join(lines)


def _context_parallel_line(cfg: TrainConfig, degrees: tuple[int, int, int]) -> str:
    """Long sequences: the activations per device if context parallelism split each sequence over 2, 4, 8
    devices (olmo_fn has none yet): the estimate at sequence length / degree, with and without checkpointing."""
    seq = cfg.model.max_sequence_length
    parts = []
    for degree in (2, 4, 8):
        short = replace(cfg, model=replace(cfg.model, max_sequence_length=-(-seq // degree)))
        plain, ckpt = (estimate_memory(short, degrees, c).activations / 2**30 for c in (False, True))
        parts.append(f"{degree}: {plain:.3f} / {ckpt:.3f} GiB")
    return (
        f"context parallelism (not in olmo_fn yet) would split each {seq}-token sequence; activations per "
        "device without / with full checkpointing at degree " + "; ".join(parts)
    )
