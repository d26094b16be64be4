"""Initialisation: deterministic in (config, seed), layout-independent, the original's std rules."""

import dataclasses
import math

import pytest
import torch

from olmo_fn.config import ModelConfig
from olmo_fn.model import Transformer, init_weights
from olmo_fn.model.init import init_std

CFG = ModelConfig(
    d_model=128,
    n_heads=4,
    n_kv_heads=2,
    n_layers=3,
    mlp_hidden_size=512,
    vocab_size=1000,
    embedding_size=1024,
    eos_token_id=0,
    pad_token_id=1,
    max_sequence_length=64,
    layer_norm_type="rms",
    layer_norm_with_affine=True,
    attention_layer_norm=True,
    norm_after=True,
)


def _init(cfg, seed, device="cpu"):
    with torch.device("meta"):
        model = Transformer(cfg)
    model.to_empty(device=device)
    init_weights(model, cfg, seed)
    return model.state_dict()


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = _init(CFG, 3), _init(CFG, 3), _init(CFG, 4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["blocks.0.attention.q_proj.weight"], c["blocks.0.attention.q_proj.weight"])


def test_a_parameter_does_not_depend_on_the_rest_of_the_model():
    deeper = dataclasses.replace(CFG, n_layers=5)
    a, b = _init(CFG, 9), _init(deeper, 9)
    for name in a:
        if name.startswith("blocks.") or name == "embeddings.weight":
            assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("init_fn", ["mitchell", "normal", "full_megatron"])
def test_std_and_truncation_follow_the_scheme(init_fn):
    cfg = dataclasses.replace(CFG, init_fn=init_fn, init_cutoff_factor=3.0 if init_fn != "mitchell" else None)
    sd = _init(cfg, 0)
    for name, tensor in sd.items():
        if name.endswith("norm.weight"):
            assert torch.equal(tensor, torch.ones_like(tensor))
            continue
        std, cutoff = init_std(cfg, name)
        assert tensor.abs().max() <= cutoff * std + 1e-7, name
        # A normal truncated at 3 std has std 0.9866 x the untruncated one.
        assert tensor.std().item() == pytest.approx(0.9866 * std, rel=0.08), name


def test_std_rules():
    d, hidden = CFG.d_model, CFG.hidden_size
    m = dataclasses.replace(CFG, init_fn="mitchell")
    assert init_std(m, "blocks.2.attention.o_proj.weight") == (1 / math.sqrt(2 * d * 3), 3.0)
    assert init_std(m, "blocks.0.mlp.down_proj.weight") == (1 / math.sqrt(2 * hidden * 1), 3.0)
    assert init_std(m, "blocks.1.attention.q_proj.weight") == (1 / math.sqrt(d), 3.0)
    assert init_std(m, "embeddings.weight") == (1 / math.sqrt(d), 3.0)
    meg = dataclasses.replace(CFG, init_fn="full_megatron", init_std=0.01)
    assert init_std(meg, "blocks.1.mlp.down_proj.weight")[0] == pytest.approx(0.01 / math.sqrt(6))
    assert init_std(meg, "lm_head.weight")[0] == pytest.approx(1 / math.sqrt(d))
    n = dataclasses.replace(CFG, init_fn="normal", init_std=0.02, emb_init_std=0.5, init_cutoff_factor=None)
    assert init_std(n, "embeddings.weight") == (0.5, None)
    assert init_std(n, "blocks.0.mlp.down_proj.weight") == (0.02, None)
