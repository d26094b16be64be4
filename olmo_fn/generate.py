"""Text continuation with a trained model (greedy; the full sampler with a KV cache is in progress)."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def greedy_continuation(
    model: nn.Module, input_ids: torch.Tensor, max_new_tokens: int, eos_token_id: int | None = None
) -> torch.Tensor:
    """Append up to max_new_tokens greedy tokens to a [1, T] prompt (recomputing the prefix each step)."""
    was_training = model.training
    model.eval()
    ids = input_ids
    limit = model.config.max_sequence_length
    vocab = model.config.vocab_size
    for _ in range(max_new_tokens):
        logits = model(ids[:, -limit:])[:, -1, :vocab]
        next_id = logits.argmax(-1, keepdim=True)
        ids = torch.cat([ids, next_id], dim=1)
        if eos_token_id is not None and int(next_id) == eos_token_id:
            break
    model.train(was_training)
    return ids[:, input_ids.shape[1] :]
