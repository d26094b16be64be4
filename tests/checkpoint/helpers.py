"""Shared test helpers: a tiny model with trained optimizer state, comparisons, and a trainer state."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import torch

from olmo_fn.config import ModelConfig
from olmo_fn.model import Transformer, init_weights

OLMO2 = dict(
    d_model=32,
    n_heads=4,
    n_kv_heads=2,
    n_layers=2,
    mlp_hidden_size=128,
    vocab_size=100,
    embedding_size=128,
    eos_token_id=99,
    pad_token_id=1,
    max_sequence_length=32,
    layer_norm_type="rms",
    layer_norm_with_affine=True,
    layer_norm_eps=1e-6,
    attention_layer_norm=True,
    norm_after=True,
    rope_theta=500_000.0,
)


def tiny_cfg(**overrides) -> ModelConfig:
    return ModelConfig(**{**OLMO2, **overrides})


def trained(cfg: ModelConfig, steps: int = 2, seed: int = 0):
    """A model and AdamW optimizer after a few steps (so exp_avg etc. are non-trivial)."""
    model = Transformer(cfg)
    init_weights(model, cfg, seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95), weight_decay=0.1)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        tokens = torch.randint(0, cfg.vocab_size, (2, 16), generator=gen)
        loss = model(tokens).float().logsumexp(-1).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def fresh(cfg: ModelConfig, seed: int = 123):
    model = Transformer(cfg)
    init_weights(model, cfg, seed)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


def assert_same_model(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def assert_same_optim(model_a, opt_a, model_b, opt_b):
    for (name, pa), (_, pb) in zip(model_a.named_parameters(), model_b.named_parameters()):
        sa, sb = opt_a.state[pa], opt_b.state[pb]
        assert sorted(sa) == sorted(sb), name
        for k in sa:
            assert torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb[k])), (name, k)
    for ga, gb in zip(opt_a.param_groups, opt_b.param_groups):
        assert {k: v for k, v in ga.items() if k != "params"} == {
            k: v for k, v in gb.items() if k != "params"
        }


def trainer_state(step: int = 2) -> dict:
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    return {
        "step": step,
        "tokens_seen": 64 * step,
        "examples_seen_this_epoch": 4 * step,
        "epoch": 0,
        "world_size": 1,
        "data_loader": {"sampler": {"index": 3, "seed": 1}, "buffer": [1, 2, 3]},
        "rng": {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": [],
        },
    }


def config_dict(cfg: ModelConfig) -> dict:
    return {"run_name": "test", "seed": 3, "model": dataclasses.asdict(cfg), "optim": {"lr": 0.01}}
