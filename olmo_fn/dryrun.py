"""`--dry_run`: the resolved config, exact parameter count, FLOPs per token and a memory estimate."""

from __future__ import annotations

from dataclasses import dataclass

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


def estimate_memory(cfg: TrainConfig, world_size: int = 1) -> MemoryEstimate:
    """Per-device memory of training `cfg` with parameters, gradients and AdamW state sharded over all ranks."""
    n = num_params(cfg.model)
    shard = -(-n // world_size)
    act_bytes = 2 if cfg.precision == "amp_bf16" else 4
    tokens = cfg.device_train_microbatch_size * cfg.model.max_sequence_length
    per_block = activation_values_per_token(cfg.model) * tokens * act_bytes
    head = (
        2 * min(tokens, 1024) * cfg.model.padded_vocab_size * 4
    )  # one chunk of fp32 logits and its gradient
    embedding = tokens * cfg.model.d_model * act_bytes
    return MemoryEstimate(
        parameters=shard * 4,
        gradients=shard * 4,
        optimizer=shard * 8,
        activations=cfg.model.n_layers * per_block + head + embedding,
    )


def dry_run_report(cfg: TrainConfig, world_size: int = 1) -> str:
    """What --dry_run prints."""
    mem = estimate_memory(cfg, world_size)
    gib = 2**30
    lines = [
        dump_yaml(cfg).rstrip(),
        "---",
        f"parameters: {num_params(cfg.model)}",
        f"non-embedding parameters: {num_params(cfg.model, include_embedding=False)}",
        f"flops per token: {flops_per_token(cfg.model)}",
        f"memory per device (estimate, {world_size} device(s)): parameters {mem.parameters / gib:.2f} GiB, "
        f"gradients {mem.gradients / gib:.2f} GiB, optimizer {mem.optimizer / gib:.2f} GiB, "
        f"activations {mem.activations / gib:.2f} GiB, total {mem.total / gib:.2f} GiB",
    ]
    return "\n".join(lines)
