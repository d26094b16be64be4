"""Next-token choice as pure functions over [B, V] logits, with the semantics of transformers' processors.

The order is transformers' too: repetition penalty, then temperature, top-k and top-p, then a draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from olmo_fn.errors import ConfigError


@dataclass(frozen=True)
class SamplingConfig:
    """How to pick each next token: greedy (do_sample False) or a seeded draw from the filtered distribution."""

    do_sample: bool = False
    """Sample from the distribution; otherwise take the most likely token (greedy)."""
    temperature: float = 1.0
    top_k: int = 0
    """Keep only the k most likely tokens (0: all)."""
    top_p: float = 1.0
    """Keep the smallest set of most likely tokens whose probability reaches top_p (1.0: all)."""
    repetition_penalty: float = 1.0
    """Divide positive (multiply negative) logits of tokens already in the sequence by this (1.0: off)."""
    seed: int = 0

    def validate(self) -> None:
        """Raise ConfigError naming a setting that has no meaning."""
        if self.temperature <= 0:
            raise ConfigError(
                f"temperature must be > 0 (got {self.temperature}); use do_sample=False for greedy"
            )
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1] (got {self.top_p})")
        if self.top_k < 0 or self.repetition_penalty <= 0:
            raise ConfigError("top_k must be >= 0 and repetition_penalty > 0")


def repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Penalise tokens marked in the [B, V] bool `seen`: positive logits / penalty, negative ones * penalty."""
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalised, logits)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Set every logit below the k-th largest to -inf (ties with the k-th are kept)."""
    k = min(max(k, 1), logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the most likely tokens whose cumulative probability first reaches p (at least one), -inf the rest."""
    sorted_logits, order = torch.sort(logits, descending=False, dim=-1)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1 - p)
    remove_sorted[..., -1:] = False
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def process_logits(logits: torch.Tensor, seen: torch.Tensor | None, cfg: SamplingConfig) -> torch.Tensor:
    """fp32 logits after the penalty and (when sampling) temperature, top-k and top-p."""
    logits = logits.float()
    if cfg.repetition_penalty != 1.0 and seen is not None:
        logits = repetition_penalty(logits, seen, cfg.repetition_penalty)
    if not cfg.do_sample:
        return logits
    if cfg.temperature != 1.0:
        logits = logits / cfg.temperature
    if cfg.top_k > 0:
        logits = top_k_filter(logits, cfg.top_k)
    if cfg.top_p < 1.0:
        logits = top_p_filter(logits, cfg.top_p)
    return logits


def next_tokens(
    logits: torch.Tensor, seen: torch.Tensor | None, cfg: SamplingConfig, generator: torch.Generator | None
) -> torch.Tensor:
    """[B] next token ids from [B, V] logits: argmax, or a draw with `generator` when sampling."""
    logits = process_logits(logits, seen, cfg)
    if not cfg.do_sample:
        return logits.argmax(dim=-1)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
