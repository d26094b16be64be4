"""Optimizer and schedule: the original OLMo's AdamW parameter groups, and the learning rate and gradient
clipping limit as pure functions of training progress."""

from __future__ import annotations

import math

import torch
from torch import nn

from olmo_fn.config import OptimizerConfig, SchedulerConfig
from olmo_fn.errors import ConfigError


def is_decayed(name: str, cfg: OptimizerConfig) -> bool:
    """Linear weights always decay; norm weights only with decay_norm_and_bias; the embedding only with
    decay_embeddings (the original's rules)."""
    if name.endswith("norm.weight"):
        return cfg.decay_norm_and_bias
    if name.startswith("embeddings."):
        return cfg.decay_embeddings
    return True


def param_groups(model: nn.Module, cfg: OptimizerConfig) -> list[dict]:
    """Two groups, as the original: decayed parameters (sorted by name), then the rest with weight_decay 0."""
    named = sorted((n, p) for n, p in model.named_parameters() if p.requires_grad)
    decay = [(n, p) for n, p in named if is_decayed(n, cfg)]
    no_decay = [(n, p) for n, p in named if not is_decayed(n, cfg)]
    groups = [
        {
            "params": [p for _, p in decay],
            "param_names": [n for n, _ in decay],
            "weight_decay": cfg.weight_decay,
        },
        {"params": [p for _, p in no_decay], "param_names": [n for n, _ in no_decay], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """torch's AdamW over `param_groups`, fused where the parameters' device supports it."""
    device = next(model.parameters()).device
    fused = cfg.fused if cfg.fused is not None else device.type in ("cuda", "cpu")
    return torch.optim.AdamW(
        param_groups(model, cfg), lr=cfg.learning_rate, betas=cfg.betas, eps=cfg.eps, fused=fused
    )


def lr_at(
    cfg: SchedulerConfig, peak_lr: float, t: float, t_max: float, bolt_on_from: float | None = None
) -> float:
    """Learning rate at progress t (the step being taken, counted from 1, or tokens seen after it).

    t_max is the end of training in the same units (cfg.t_max overrides it). With bolt_on_from (a resumed
    run whose optimizer state was reset at that progress), the rate is 0 before it and ramps linearly from 0
    to the inner schedule's value at bolt_on_from + t_warmup, as the original's BoltOnWarmup.
    """
    if bolt_on_from is not None and cfg.t_warmup > 0:
        if t < bolt_on_from:
            return 0.0
        if t < bolt_on_from + cfg.t_warmup:
            end = lr_at(cfg, peak_lr, bolt_on_from + cfg.t_warmup, t_max)
            return end * (t - bolt_on_from) / cfg.t_warmup
    total = cfg.t_max if cfg.t_max is not None else t_max
    warmup = cfg.t_warmup
    eta_min = cfg.alpha_f * peak_lr
    if cfg.name == "constant":
        return peak_lr
    if t < warmup:
        start = 0.1 * peak_lr if cfg.warmup_min_lr is None else cfg.warmup_min_lr
        return start + (peak_lr - start) * t / warmup
    if cfg.name == "constant_with_warmup":
        return peak_lr
    if cfg.name == "inverse_sqrt_with_warmup":
        return peak_lr * math.sqrt(max(warmup, 1) / max(warmup, t, 1))
    if t >= total:
        return eta_min
    if cfg.name == "wsd":
        decay_start = total * (1 - cfg.decay_fraction)
        if t < decay_start:
            return peak_lr
        return peak_lr - (peak_lr - eta_min) * (t - decay_start) / (total - decay_start)
    frac = (t - warmup) / max(total - warmup, 1e-12)
    if cfg.name == "linear_with_warmup":
        return peak_lr - (peak_lr - eta_min) * frac
    if cfg.name == "cosine_with_warmup":
        return eta_min + (peak_lr - eta_min) * (1 + math.cos(math.pi * frac)) / 2
    raise ConfigError(f"scheduler.name: unknown schedule {cfg.name!r}")


def max_grad_norm_at(cfg: SchedulerConfig, max_grad_norm: float | None, t: float) -> float | None:
    """Gradient-norm limit at progress t: multiplied by grad_clip_warmup_factor during the clip warmup."""
    if max_grad_norm is None:
        return None
    if cfg.grad_clip_warmup_steps is not None and cfg.grad_clip_warmup_factor is not None:
        if t <= cfg.grad_clip_warmup_steps:
            return max_grad_norm * cfg.grad_clip_warmup_factor
    return max_grad_norm


def clip_limit(
    cfg: SchedulerConfig, max_grad_norm: float | None, step: int, unit: float, *, lagged: bool = False
) -> float | None:
    """The gradient-norm limit step `step` (counted from 1, at progress step x unit) is clipped with.

    lagged: the original trainer's order, which clipped before updating the limit, so a step used the limit
    of the step before it and the first step the plain max_grad_norm.
    """
    if not lagged:
        return max_grad_norm_at(cfg, max_grad_norm, step * unit)
    return max_grad_norm if step <= 1 else max_grad_norm_at(cfg, max_grad_norm, (step - 1) * unit)
