"""ModelConfig validation and the published presets' exact parameter counts."""

import dataclasses

import pytest
import torch

from olmo_fn.config import ModelConfig
from olmo_fn.errors import ConfigError
from olmo_fn.model import PRESETS, Transformer, flops_per_token, num_params
from olmo_fn.model.presets import olmo2_7b, olmo_tiny

EXPECTED = {
    "olmo-1b": 1_176_764_416,
    "olmo-7b": 6_888_095_744,
    "olmo-7b-twin-2t": 6_888_095_744,
    "olmo-7b-0424": 6_888_095_744,
    "olmo-7b-0724": 6_888_095_744,
    "olmo2-1b": 1_484_916_736,
    "olmo2-7b": 7_298_617_344,
    "olmo2-13b": 13_716_198_400,
    "olmo2-32b": 32_234_279_936,
    "olmo3-7b": 7_298_617_344,
    "olmo3-32b": 32_234_279_936,
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_parameter_counts_on_meta(name):
    cfg = PRESETS[name]()
    with torch.device("meta"):
        model = Transformer(cfg)
    built = sum(p.numel() for p in model.parameters())
    assert built == EXPECTED[name]
    assert num_params(cfg) == EXPECTED[name]


@pytest.mark.parametrize("name", ["olmo2-13b", "olmo2-32b", "olmo3-7b", "olmo3-32b"])
def test_preset_parameter_counts_equal_transformers_models(name):
    from transformers import Olmo2ForCausalLM, Olmo3ForCausalLM

    from olmo_fn.checkpoint.hf import hf_config, is_olmo3, model_config_from_hf

    cfg = PRESETS[name]()
    with torch.device("meta"):
        theirs = (Olmo3ForCausalLM if is_olmo3(cfg) else Olmo2ForCausalLM)(hf_config(cfg))
    assert sum(p.numel() for p in theirs.parameters()) == EXPECTED[name]
    layer_types = theirs.config.layer_types if is_olmo3(cfg) else None
    if name.startswith("olmo3"):  # three sliding layers of 4096 tokens, then a full one; the last is full
        assert layer_types[:4] == ["sliding_attention"] * 3 + ["full_attention"]
        assert layer_types[-1] == "full_attention" and theirs.config.sliding_window == 4096
        back = model_config_from_hf(theirs.config, vocab_size=cfg.vocab_size)  # the pattern, not 32 entries
        assert back.layer_types == cfg.layer_types == ("sliding", "sliding", "sliding", "full")


def test_preset_architectures():
    seven = PRESETS["olmo-7b-0724"]()
    assert seven.clip_qkv == 8.0 and seven.max_sequence_length == 4096 and seven.family == "olmo1"
    assert PRESETS["olmo-1b"]().weight_tying and not PRESETS["olmo-7b"]().weight_tying
    two = olmo2_7b()
    assert two.family == "olmo2" and two.rope_theta == 500_000 and two.layer_norm_eps == 1e-6
    assert two.hidden_size == 11008 and two.padded_vocab_size == 100352


def test_tiny_builds_and_runs_on_cpu():
    cfg = olmo_tiny()
    model = Transformer(cfg)
    logits = model(torch.randint(0, cfg.vocab_size, (2, 16)))
    assert logits.shape == (2, 16, cfg.padded_vocab_size)
    assert num_params(cfg) == sum(p.numel() for p in model.parameters())


def test_flops_per_token_matches_the_hand_count():
    # OLMo 2 shape of the training benchmark: d 512, 8 layers, MLP 1536, vocab 8192, sequence 512.
    cfg = ModelConfig(
        d_model=512,
        n_heads=8,
        n_layers=8,
        mlp_hidden_size=3072,
        vocab_size=8192,
        embedding_size=8192,
        eos_token_id=0,
        pad_token_id=1,
        max_sequence_length=512,
    )
    blocks = 8 * (4 * 512 * 512 + 3 * 512 * 1536)
    assert flops_per_token(cfg) == 6 * (blocks + 8192 * 512) + 12 * 8 * 512 * 512


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(d_model=100, n_heads=12), "model.d_model"),
        (dict(n_heads=12, n_kv_heads=5), "model.n_heads"),
        (dict(embedding_size=100, vocab_size=200, eos_token_id=0), "model.embedding_size"),
        (dict(eos_token_id=60000), "model.eos_token_id"),
        (dict(n_layers=0), "model.n_layers"),
        (dict(mlp_hidden_size=7), "model.mlp_hidden_size"),
        (dict(clip_qkv=-1.0), "model.clip_qkv"),
        (dict(init_fn="xavier"), "model.init_fn"),
    ],
)
def test_inconsistent_configs_name_the_field(change, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        dataclasses.replace(ModelConfig(), **change)


def test_readme_model_table_lists_every_preset_with_its_count():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = re.findall(r"^\| (`[^|]+`) \| ([\d,]+) \|", readme, re.M)
    listed = {
        name.strip("`"): int(count.replace(",", "")) for names, count in rows for name in names.split(", ")
    }
    assert listed == {name: num_params(make()) for name, make in PRESETS.items()}
