"""Against logits written by the original OLMo code (tests/fixtures/original_olmo, see its README)."""

import numpy as np
import pytest
import torch
import yaml

from olmo_fn.checkpoint.olmo import from_olmo_state_dict, model_config_from_olmo, to_olmo_state_dict
from olmo_fn.errors import ConfigError
from olmo_fn.model import Transformer


def _load(fixtures, name):
    folder = fixtures / "original_olmo" / name
    cfg = model_config_from_olmo(yaml.safe_load((folder / "config.yaml").read_text())["model"])
    original = torch.load(folder / "model.pt", weights_only=True, map_location="cpu")
    return cfg, original


@pytest.mark.parametrize("name, family", [("olmo1", "olmo1"), ("olmo2", "olmo2")])
def test_logits_equal_the_original_implementation(fixtures, name, family):
    cfg, original = _load(fixtures, name)
    assert cfg.family == family
    model = Transformer(cfg).eval()
    model.load_state_dict(from_olmo_state_dict(original, cfg), strict=True)
    tokens = torch.from_numpy(np.load(fixtures / "original_olmo" / f"{name}.tokens.npy"))
    expected = torch.from_numpy(np.load(fixtures / "original_olmo" / f"{name}.logits.npy"))
    with torch.no_grad():
        logits = model(tokens)
    assert logits.shape == expected.shape == (2, 24, 256)
    assert (logits - expected).abs().max().item() < 1e-5


def test_config_sections_map_exactly(fixtures):
    cfg1, _ = _load(fixtures, "olmo1")
    assert (cfg1.clip_qkv, cfg1.weight_tying, cfg1.rope_theta, cfg1.init_fn) == (2.5, True, 10000, "mitchell")
    cfg2, _ = _load(fixtures, "olmo2")
    assert (cfg2.n_kv_heads, cfg2.layer_norm_eps, cfg2.rope_theta, cfg2.norm_after) == (2, 1e-6, 500000, True)
    assert (cfg2.vocab_size, cfg2.padded_vocab_size, cfg2.eos_token_id, cfg2.pad_token_id) == (
        250,
        256,
        249,
        1,
    )


@pytest.mark.parametrize("name", ["olmo1", "olmo2"])
def test_fused_projections_round_trip_exactly(fixtures, name):
    cfg, original = _load(fixtures, name)
    back = to_olmo_state_dict(from_olmo_state_dict(original, cfg), cfg)
    assert sorted(back) == sorted(original)
    assert all(torch.equal(back[k], original[k]) for k in original)


def test_unsupported_original_options_are_refused(fixtures):
    model = yaml.safe_load((fixtures / "original_olmo" / "olmo1" / "config.yaml").read_text())["model"]
    with pytest.raises(ConfigError, match="model.alibi"):
        model_config_from_olmo({**model, "alibi": True})
