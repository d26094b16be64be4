"""Numerics against transformers' OlmoForCausalLM / Olmo2ForCausalLM (an implementation nobody here wrote)."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from transformers import Olmo2ForCausalLM, Olmo3ForCausalLM, OlmoForCausalLM

from olmo_fn.checkpoint.hf import (
    from_hf_state_dict,
    hf_config,
    is_olmo3,
    model_config_from_hf,
    to_hf_state_dict,
)
from olmo_fn.config import ModelConfig
from olmo_fn.errors import ConfigError
from olmo_fn.loss import lm_loss, shift_labels
from olmo_fn.model import Transformer, init_weights

BASE = dict(
    d_model=64,
    n_heads=4,
    n_layers=2,
    mlp_hidden_size=256,
    vocab_size=250,
    embedding_size=256,
    eos_token_id=249,
    pad_token_id=1,
    max_sequence_length=64,
)
OLMO1 = dict(layer_norm_type="default", layer_norm_with_affine=False, init_fn="mitchell")
OLMO2 = dict(
    layer_norm_type="rms",
    layer_norm_with_affine=True,
    layer_norm_eps=1e-6,
    attention_layer_norm=True,
    norm_after=True,
    init_fn="normal",
    init_std=0.05,
)
CASES = {
    "olmo2-untied-mha-theta500k": dict(**OLMO2, rope_theta=500_000.0),
    "olmo2-tied-gqa-theta10k": dict(**OLMO2, n_kv_heads=2, weight_tying=True, rope_theta=10_000.0),
    "olmo1-tied-clipqkv-theta10k": dict(**OLMO1, weight_tying=True, clip_qkv=0.5, rope_theta=10_000.0),
    "olmo1-untied-mqa-theta500k": dict(**OLMO1, n_kv_heads=1, rope_theta=500_000.0),
    # OLMo 3: a sliding window shorter than the sequence (40), with and without YaRN on the full layer
    "olmo3-window5-gqa": dict(**OLMO2, n_kv_heads=2, layer_types=("sliding", "full"), sliding_window=5),
    "olmo3-window7-yarn": dict(
        **OLMO2,
        layer_types=("sliding", "full"),
        sliding_window=7,
        rope_theta=10_000.0,
        rope_yarn_factor=8.0,
        rope_yarn_original_max_position=4096,
    ),  # fmt: skip
    "olmo3-yarn-only": dict(
        **OLMO2, rope_yarn_factor=4.0, rope_yarn_original_max_position=2048, rope_yarn_attention_factor=1.1
    ),  # fmt: skip
}
HF_CLASS = {"olmo1": OlmoForCausalLM, "olmo2": Olmo2ForCausalLM, "olmo3": Olmo3ForCausalLM}
MAX_ABS = 1e-5
results: dict[str, float] = {}


def _kind(cfg):
    return "olmo3" if is_olmo3(cfg) else cfg.family


def _cfg(case):
    return ModelConfig(**{**BASE, **CASES[case]})


def _tokens(cfg, seed=0, shape=(3, 40)):
    return torch.randint(0, cfg.vocab_size, shape, generator=torch.Generator().manual_seed(seed))


def _random_hf(cfg, seed):
    torch.manual_seed(seed)
    hf = HF_CLASS[_kind(cfg)](hf_config(cfg)).eval()
    with torch.no_grad():  # move norm weights away from 1 so a dropped norm weight shows
        for name, p in hf.named_parameters():
            p.copy_(1 + 0.2 * torch.randn_like(p) if "norm" in name else 0.08 * torch.randn_like(p))
    return hf


@pytest.mark.parametrize("case", sorted(CASES))
def test_hf_to_olmo_fn_logits_and_loss(case):
    cfg = _cfg(case)
    hf = _random_hf(cfg, 1)
    ours = Transformer(model_config_from_hf(hf.config, vocab_size=cfg.vocab_size)).eval()
    ours.load_state_dict(from_hf_state_dict(hf.state_dict(), cfg), strict=True)
    ids = _tokens(cfg)
    with torch.no_grad():
        hf_out = hf(input_ids=ids, labels=ids)
        logits = ours(ids)
        labels = shift_labels(ids)
        ours_loss = lm_loss(logits, labels).ce / (labels != -100).sum()
        chunked = ours(ids, labels=labels, loss_chunk_size=17).ce / (labels != -100).sum()
    diff = (logits - hf_out.logits).abs().max().item()
    results[f"hf->olmo_fn {case}"] = diff
    assert logits.shape == (3, 40, cfg.padded_vocab_size)
    assert diff < MAX_ABS
    torch.testing.assert_close(ours_loss, hf_out.loss, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(chunked, hf_out.loss, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", sorted(CASES))
def test_olmo_fn_to_hf_logits(case):
    cfg = _cfg(case)
    ours = Transformer(cfg).eval()
    init_weights(ours, cfg, seed=5)
    with torch.no_grad():
        for name, p in ours.named_parameters():
            if "norm" in name:
                p.add_(0.2 * torch.randn_like(p))
    hf = HF_CLASS[_kind(cfg)](hf_config(cfg)).eval()
    hf.load_state_dict(to_hf_state_dict(ours.state_dict(), cfg), strict=True)
    ids = _tokens(cfg, 1)
    with torch.no_grad():
        diff = (ours(ids) - hf(input_ids=ids).logits).abs().max().item()
    results[f"olmo_fn->hf {case}"] = diff
    assert diff < MAX_ABS
    assert model_config_from_hf(hf.config, vocab_size=cfg.vocab_size) == dataclasses.replace(
        cfg, init_cutoff_factor=3.0 if cfg.family == "olmo2" else None
    )


def _logits(cfg, ids, **change):
    model = Transformer(dataclasses.replace(cfg, **change)).eval()
    init_weights(model, model.config, seed=5)
    with torch.no_grad():
        return model(ids)


def test_the_window_and_yarn_change_what_is_compared():
    """The OLMo 3 cases above are not OLMo 2 in disguise: their window and YaRN move the logits."""
    cfg = _cfg("olmo3-window5-gqa")
    ids = _tokens(cfg, 1)
    windowed, unwindowed = _logits(cfg, ids), _logits(cfg, ids, layer_types=None, sliding_window=None)
    # within the first window every query sees all its keys: equal there, different after
    torch.testing.assert_close(windowed[:, :5], unwindowed[:, :5], rtol=0, atol=0)
    assert (windowed[:, 5:] - unwindowed[:, 5:]).abs().max() > 1e-2
    cfg = _cfg("olmo3-window7-yarn")
    assert (_logits(cfg, ids) - _logits(cfg, ids, rope_yarn_factor=None)).abs().max() > 1e-2


@pytest.mark.parametrize("case", ["olmo2-tied-gqa-theta10k", "olmo1-untied-mqa-theta500k"])
def test_left_padded_batch_matches_hf_on_real_tokens(case):
    cfg = _cfg(case)
    hf = _random_hf(cfg, 2)
    ours = Transformer(cfg).eval()
    ours.load_state_dict(from_hf_state_dict(hf.state_dict(), cfg))
    ids = _tokens(cfg, 3, (3, 20))
    mask = torch.ones_like(ids)
    mask[0, :7], mask[1, :2] = 0, 0
    ids = ids.masked_fill(mask == 0, cfg.pad_token_id)
    with torch.no_grad():
        ours_logits = ours(ids, attention_mask=mask)
        hf_logits = hf(input_ids=ids, attention_mask=mask).logits
        alone = ours(ids[0:1, 7:])  # the first prompt on its own, unpadded
    real = mask.bool()
    diff = (ours_logits[real] - hf_logits[real]).abs().max().item()
    results[f"left-padded {case}"] = diff
    assert diff < MAX_ABS
    assert (ours_logits[0, 7:] - alone[0]).abs().max().item() < 1e-4


def test_hybrid_configs_are_refused_with_the_reason():
    hybrid = ModelConfig(**{**BASE, **OLMO1, "layer_norm_type": "rms"})
    with pytest.raises(ConfigError, match="matches neither"):
        hf_config(hybrid)
    with pytest.raises(ConfigError, match="clip_qkv"):
        hf_config(ModelConfig(**{**BASE, **OLMO2, "clip_qkv": 8.0}))


def test_training_loss_gradients_match_hf():
    cfg = _cfg("olmo2-untied-mha-theta500k")
    hf = _random_hf(cfg, 4).train()
    ours = Transformer(cfg)
    ours.load_state_dict(from_hf_state_dict(hf.state_dict(), cfg))
    ids = _tokens(cfg, 5, (2, 24))
    hf(input_ids=ids, labels=ids).loss.backward()
    labels = shift_labels(ids)
    (ours(ids, labels=labels, z_loss_multiplier=0.0).total / (labels != -100).sum()).backward()
    hf_grads = to_hf_state_dict({n: p.grad for n, p in ours.named_parameters()}, cfg)
    for name, p in hf.named_parameters():
        torch.testing.assert_close(hf_grads[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)
    assert F.mse_loss(hf_grads["lm_head.weight"], hf.lm_head.weight.grad) < 1e-14


def teardown_module():
    for key, value in sorted(results.items()):
        print(f"max |dlogits| {key}: {value:.2e}")
