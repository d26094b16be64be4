"""Every experiment file is a recipe with the official settings, runnable with --help and --dry_run.

The official values are written below as data, one dict per recipe, transcribed from the original's YAMLs
(verbatim copies in tests/fixtures/official_configs/, see its README) and, for the fields a YAML leaves out,
from the original's defaults (olmo/config.py). Each recipe's config is held against its dict field by field,
and each dict against its fixture YAML, so a wrong transcription in a recipe (or here) fails a test.
"""

import functools
import subprocess
import sys
from dataclasses import asdict, is_dataclass, replace
from pathlib import Path

import pytest
import yaml

from olmo_fn.model import num_params
from olmo_fn.recipes import load_recipe

__all__ = ["RECIPES", "load_recipe"]  # tests/experiments/test_recipes_run.py uses both

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "official_configs"
RECIPES = {
    "olmo_1b": 1_176_764_416,
    "olmo_7b": 6_888_095_744,
    "olmo_7b_twin_2t": 6_888_095_744,
    "olmo_7b_0424": 6_888_095_744,
    "olmo_7b_0724": 6_888_095_744,
    "olmo2_1b": 1_484_916_736,
    "olmo2_7b": 7_298_617_344,
    "olmo2_13b": 13_716_198_400,
    "olmo2_32b": 32_234_279_936,
    "olmo3_7b": 7_298_617_344,
    "olmo3_7b_long_context": 7_298_617_344,
    "olmo3_32b": 32_234_279_936,
    "olmo_tiny": None,
}
# The original trainer's seed, except for the recipes from OLMo-core's scripts (their data loader's seed).
SEEDS = {"olmo2_32b": 34521, "olmo3_7b": 34521, "olmo3_7b_long_context": 34521, "olmo3_32b": 34521}

# configs/official/OLMo-1B.yaml of allenai/OLMo (fixture OLMo-1B.yaml)
OLMO_1B = {
    "model.d_model": 2048,
    "model.n_heads": 16,
    "model.n_kv_heads": None,
    "model.n_layers": 16,
    "model.mlp_ratio": 8,
    "model.mlp_hidden_size": None,
    "model.layer_norm_type": "default",
    "model.layer_norm_with_affine": False,
    "model.layer_norm_eps": 1e-5,
    "model.attention_layer_norm": False,
    "model.norm_after": False,
    "model.clip_qkv": None,
    "model.rope_theta": 10000.0,
    "model.weight_tying": True,
    "model.vocab_size": 50280,
    "model.embedding_size": 50304,
    "model.eos_token_id": 50279,
    "model.pad_token_id": 1,
    "model.max_sequence_length": 2048,
    "model.init_fn": "mitchell",
    "model.init_std": 0.02,
    "model.init_cutoff_factor": None,
    "model.emb_init_std": None,
    "optimizer.name": "adamw",
    "optimizer.learning_rate": 4.0e-4,
    "optimizer.betas": (0.9, 0.95),
    "optimizer.eps": 1e-5,
    "optimizer.weight_decay": 0.1,
    "optimizer.decay_norm_and_bias": False,
    "optimizer.decay_embeddings": False,
    "scheduler.name": "cosine_with_warmup",
    "scheduler.units": "steps",
    "scheduler.t_warmup": 2000,
    "scheduler.t_max": None,
    "scheduler.alpha_f": 0.1,
    "scheduler.warmup_min_lr": None,
    "scheduler.grad_clip_warmup_steps": None,
    "scheduler.grad_clip_warmup_factor": None,
    "seed": 6198,
    "max_duration": "739328",
    "global_train_batch_size": 2048,
    "device_train_microbatch_size": 8,
    "precision": "amp_bf16",
    "compile": False,
    "max_grad_norm": 1.0,
    "softmax_auxiliary_loss": False,
    "auxiliary_loss_multiplier": 1e-4,
    "save_interval": 1000,
    "save_num_checkpoints_to_keep": 9,
    "save_interval_unsharded": 10000,
    "save_num_unsharded_checkpoints_to_keep": -1,
    "data.memmap_dtype": "uint16",
    "data.instance_filter": None,
    "data.drop_last": True,
    "data.seed": None,
    "data.generate_attention_mask": False,
    # not in the YAML: what the original trainer did (no clip warmup, no z-loss here: nothing to reproduce)
    "original_trainer.lagged_clip_warmup": False,
    "original_trainer.builtin_z_loss_multiplier": False,
}

# configs/official/OLMo-7B.yaml of allenai/OLMo (fixture OLMo-7B.yaml)
OLMO_7B = {
    "model.d_model": 4096,
    "model.n_heads": 32,
    "model.n_kv_heads": None,
    "model.n_layers": 32,
    "model.mlp_hidden_size": 22016,
    "model.layer_norm_type": "default",
    "model.layer_norm_with_affine": False,
    "model.layer_norm_eps": 1e-5,
    "model.attention_layer_norm": False,
    "model.norm_after": False,
    "model.clip_qkv": None,
    "model.rope_theta": 10000.0,
    "model.weight_tying": False,
    "model.vocab_size": 50280,
    "model.embedding_size": 50304,
    "model.eos_token_id": 50279,
    "model.pad_token_id": 1,
    "model.max_sequence_length": 2048,
    "model.init_fn": "mitchell",
    "model.init_std": 0.02,
    "model.init_cutoff_factor": None,
    "model.emb_init_std": None,
    "optimizer.name": "adamw",
    "optimizer.learning_rate": 3.0e-4,
    "optimizer.betas": (0.9, 0.95),
    "optimizer.eps": 1e-5,
    "optimizer.weight_decay": 0.1,
    "optimizer.decay_norm_and_bias": False,
    "optimizer.decay_embeddings": False,
    "scheduler.name": "linear_with_warmup",
    "scheduler.units": "steps",
    "scheduler.t_warmup": 5000,
    "scheduler.t_max": None,
    "scheduler.alpha_f": 0.1,
    "scheduler.warmup_min_lr": None,
    "scheduler.grad_clip_warmup_steps": 1000,
    "scheduler.grad_clip_warmup_factor": 10.0,
    "seed": 6198,
    "max_duration": "2e12T",
    "global_train_batch_size": 2048,
    "device_train_microbatch_size": 2,
    "precision": "amp_bf16",
    "compile": True,  # compile: {fullgraph: false}
    "max_grad_norm": 1.0,
    "softmax_auxiliary_loss": False,
    "auxiliary_loss_multiplier": 1e-4,
    "save_interval": 1000,
    "save_num_checkpoints_to_keep": -1,
    "save_interval_unsharded": None,
    "save_num_unsharded_checkpoints_to_keep": -1,
    "data.memmap_dtype": "uint16",
    "data.instance_filter": None,
    "data.drop_last": True,
    "data.seed": None,
    "data.generate_attention_mask": False,
    # not in the YAML: the original trainer lagged the clip warmup by one step
    "original_trainer.lagged_clip_warmup": True,
    "original_trainer.builtin_z_loss_multiplier": False,
}

# configs/official/OLMo-7B-0424.yaml of allenai/OLMo, byte-identical to OLMo-7B-0724.yaml at the reference
# commit (fixture OLMo-7B-0724.yaml; the stored OLMo-1.7-7B.yaml is an earlier version, see its test below)
OLMO_7B_0424 = {
    "model.d_model": 4096,
    "model.n_heads": 32,
    "model.n_kv_heads": None,
    "model.n_layers": 32,
    "model.mlp_hidden_size": 22016,
    "model.layer_norm_type": "default",
    "model.layer_norm_with_affine": False,
    "model.layer_norm_eps": 1e-5,
    "model.attention_layer_norm": False,
    "model.norm_after": False,
    "model.clip_qkv": 8.0,
    "model.rope_theta": 10000.0,
    "model.weight_tying": False,
    "model.vocab_size": 50280,
    "model.embedding_size": 50304,
    "model.eos_token_id": 50279,
    "model.pad_token_id": 1,
    "model.max_sequence_length": 4096,
    "model.init_fn": "mitchell",
    "model.init_std": 0.02,
    "model.init_cutoff_factor": None,
    "model.emb_init_std": None,
    "optimizer.name": "adamw",
    "optimizer.learning_rate": 3.0e-4,
    "optimizer.betas": (0.9, 0.95),
    "optimizer.eps": 1e-5,
    "optimizer.weight_decay": 0.1,
    "optimizer.decay_norm_and_bias": True,
    "optimizer.decay_embeddings": True,
    "scheduler.name": "cosine_with_warmup",
    "scheduler.units": "tokens",
    "scheduler.t_warmup": 10_485_760_000,
    "scheduler.t_max": 3e12,
    "scheduler.alpha_f": 0.1,
    "scheduler.warmup_min_lr": None,
    "scheduler.grad_clip_warmup_steps": 2_097_152_000,
    "scheduler.grad_clip_warmup_factor": 5,
    "seed": 6198,
    "max_duration": "2ep",
    "global_train_batch_size": 1024,
    "device_train_microbatch_size": 2,
    "precision": "amp_bf16",
    "compile": False,
    "max_grad_norm": 1.0,
    "softmax_auxiliary_loss": False,
    "auxiliary_loss_multiplier": 1e-4,
    "save_interval": 1000,
    "save_num_checkpoints_to_keep": -1,
    "save_interval_unsharded": None,
    "save_num_unsharded_checkpoints_to_keep": -1,
    "data.memmap_dtype": "uint16",
    "data.instance_filter": None,
    "data.drop_last": True,
    "data.seed": None,
    "data.generate_attention_mask": False,
    # not in the YAML: the original trainer lagged the clip warmup by one step
    "original_trainer.lagged_clip_warmup": True,
    "original_trainer.builtin_z_loss_multiplier": False,
}

# data.instance_filter of the three OLMo-2 YAMLs
REPEATED_NGRAM_FILTER = {"repetition_max_period": 13, "repetition_min_period": 1, "repetition_max_count": 32}

# configs/official-1124/OLMo2-7B-stage1.yaml of allenai/OLMo (fixture OLMo2-7B-stage1.yaml)
OLMO2_7B = {
    "model.d_model": 4096,
    "model.n_heads": 32,
    "model.n_kv_heads": None,
    "model.n_layers": 32,
    "model.mlp_hidden_size": 22016,
    "model.layer_norm_type": "rms",
    "model.layer_norm_with_affine": True,
    "model.layer_norm_eps": 1e-6,
    "model.attention_layer_norm": True,
    "model.attention_layer_norm_with_affine": True,
    "model.norm_after": True,
    "model.clip_qkv": None,
    "model.rope_theta": 500000.0,
    "model.weight_tying": False,
    "model.vocab_size": 100278,
    "model.embedding_size": 100352,
    "model.eos_token_id": 100257,
    "model.pad_token_id": 100277,
    "model.max_sequence_length": 4096,
    "model.init_fn": "normal",
    "model.init_std": 0.02,
    "model.init_cutoff_factor": 3.0,
    "model.emb_init_std": None,
    "optimizer.name": "adamw",
    "optimizer.learning_rate": 3.0e-4,
    "optimizer.betas": (0.9, 0.95),
    "optimizer.eps": 1e-8,
    "optimizer.weight_decay": 0.1,
    "optimizer.decay_norm_and_bias": True,
    "optimizer.decay_embeddings": False,
    "scheduler.name": "cosine_with_warmup",
    "scheduler.units": "tokens",
    "scheduler.t_warmup": 8_388_608_000,
    "scheduler.t_max": 5e12,
    "scheduler.alpha_f": 0.1,
    "scheduler.warmup_min_lr": 0.0,
    "scheduler.grad_clip_warmup_steps": None,
    "scheduler.grad_clip_warmup_factor": None,
    "seed": 6198,
    "max_duration": "1ep",
    "global_train_batch_size": 1024,
    "device_train_microbatch_size": 2,
    "precision": "amp_bf16",
    "compile": False,
    "max_grad_norm": 1.0,
    "softmax_auxiliary_loss": True,
    "auxiliary_loss_multiplier": 1e-5,
    "save_interval": 1000,
    "save_num_checkpoints_to_keep": 0,
    "save_interval_unsharded": 1000,
    "save_num_unsharded_checkpoints_to_keep": -1,
    "data.memmap_dtype": "uint32",
    "data.instance_filter": REPEATED_NGRAM_FILTER,
    "data.drop_last": True,
    "data.seed": None,
    "data.generate_attention_mask": False,
    # not in the YAML: the original trainer never passed auxiliary_loss_multiplier to its loss (1e-4 applied)
    "original_trainer.lagged_clip_warmup": False,
    "original_trainer.builtin_z_loss_multiplier": True,
}

# configs/official-1124/OLMo2-13B-stage1.yaml of allenai/OLMo (fixture OLMo2-13B-stage1.yaml)
OLMO2_13B = {
    "model.d_model": 5120,
    "model.n_heads": 40,
    "model.n_kv_heads": None,
    "model.n_layers": 40,
    "model.mlp_hidden_size": 27648,
    "model.layer_norm_type": "rms",
    "model.layer_norm_with_affine": True,
    "model.layer_norm_eps": 1e-6,
    "model.attention_layer_norm": True,
    "model.attention_layer_norm_with_affine": True,
    "model.norm_after": True,
    "model.clip_qkv": None,
    "model.rope_theta": 500000.0,
    "model.weight_tying": False,
    "model.vocab_size": 100278,
    "model.embedding_size": 100352,
    "model.eos_token_id": 100257,
    "model.pad_token_id": 100277,
    "model.max_sequence_length": 4096,
    "model.init_fn": "normal",
    "model.init_std": 0.02,
    "model.init_cutoff_factor": 3.0,
    "model.emb_init_std": None,
    "optimizer.name": "adamw",
    "optimizer.learning_rate": 3.0e-4,
    "optimizer.betas": (0.9, 0.95),
    "optimizer.eps": 1e-8,
    "optimizer.weight_decay": 0.1,
    "optimizer.decay_norm_and_bias": True,
    "optimizer.decay_embeddings": False,
    "scheduler.name": "cosine_with_warmup",
    "scheduler.units": "tokens",
    "scheduler.t_warmup": 8_388_608_000,
    "scheduler.t_max": 5e12,
    "scheduler.alpha_f": 0.1,
    "scheduler.warmup_min_lr": 0.0,
    "scheduler.grad_clip_warmup_steps": None,
    "scheduler.grad_clip_warmup_factor": None,
    "seed": 6198,
    "max_duration": "1ep",
    "global_train_batch_size": 2048,
    "device_train_microbatch_size": 2,
    "precision": "amp_bf16",
    "compile": False,
    "max_grad_norm": 1.0,
    "softmax_auxiliary_loss": True,
    "auxiliary_loss_multiplier": 1e-5,
    "save_interval": 1000,
    "save_num_checkpoints_to_keep": 0,
    "save_interval_unsharded": 1000,
    "save_num_unsharded_checkpoints_to_keep": -1,
    "data.memmap_dtype": "uint32",
    "data.instance_filter": REPEATED_NGRAM_FILTER,
    "data.drop_last": True,
    "data.seed": None,
    "data.generate_attention_mask": False,
    # not in the YAML: the original trainer never passed auxiliary_loss_multiplier to its loss (1e-4 applied)
    "original_trainer.lagged_clip_warmup": False,
    "original_trainer.builtin_z_loss_multiplier": True,
}

# configs/official-0425/OLMo2-1B-stage1.yaml of allenai/OLMo (fixture OLMo2-1B-stage1.yaml)
OLMO2_1B = {
    "model.d_model": 2048,
    "model.n_heads": 16,
    "model.n_kv_heads": None,
    "model.n_layers": 16,
    "model.mlp_ratio": 8,
    "model.mlp_hidden_size": None,
    "model.layer_norm_type": "rms",
    "model.layer_norm_with_affine": True,
    "model.layer_norm_eps": 1e-6,
    "model.attention_layer_norm": True,
    "model.attention_layer_norm_with_affine": True,
    "model.norm_after": True,
    "model.clip_qkv": None,
    "model.rope_theta": 500000.0,
    "model.weight_tying": False,
    "model.vocab_size": 100278,
    "model.embedding_size": 100352,
    "model.eos_token_id": 100257,
    "model.pad_token_id": 100277,
    "model.max_sequence_length": 4096,
    "model.init_fn": "normal",
    "model.init_std": 0.02,
    "model.init_cutoff_factor": 3.0,
    "model.emb_init_std": None,
    "optimizer.name": "adamw",
    "optimizer.learning_rate": 4.0e-4,
    "optimizer.betas": (0.9, 0.95),
    "optimizer.eps": 1e-8,
    "optimizer.weight_decay": 0.1,
    "optimizer.decay_norm_and_bias": True,
    "optimizer.decay_embeddings": False,
    "scheduler.name": "cosine_with_warmup",
    "scheduler.units": "tokens",
    "scheduler.t_warmup": 8_388_608_000,
    "scheduler.t_max": 5e12,
    "scheduler.alpha_f": 0.1,
    "scheduler.warmup_min_lr": 0.0,
    "scheduler.grad_clip_warmup_steps": None,
    "scheduler.grad_clip_warmup_factor": None,
    "seed": 6198,
    "max_duration": "4e12T",
    "global_train_batch_size": 512,
    "device_train_microbatch_size": 4,
    "precision": "amp_bf16",
    "compile": False,
    "max_grad_norm": 1.0,
    "softmax_auxiliary_loss": True,
    "auxiliary_loss_multiplier": 1e-5,
    "save_interval": 1000,
    "save_num_checkpoints_to_keep": -1,
    "save_interval_unsharded": 1000,
    "save_num_unsharded_checkpoints_to_keep": -1,
    "data.memmap_dtype": "uint32",
    "data.instance_filter": REPEATED_NGRAM_FILTER,
    "data.drop_last": True,
    "data.seed": None,
    "data.generate_attention_mask": False,
    # not in the YAML: the original trainer never passed auxiliary_loss_multiplier to its loss (1e-4 applied)
    "original_trainer.lagged_clip_warmup": False,
    "original_trainer.builtin_z_loss_multiplier": True,
}

# recipe -> (fixture YAML, its official values). No Twin-2T config is stored in allenai/OLMo: the twin run is
# OLMo-7B's settings (architecture and schedule) on another cluster, so it is held to OLMo-7B.yaml.
OFFICIAL = {
    "olmo_1b": ("OLMo-1B.yaml", OLMO_1B),
    "olmo_7b": ("OLMo-7B.yaml", OLMO_7B),
    "olmo_7b_twin_2t": ("OLMo-7B.yaml", OLMO_7B),
    "olmo_7b_0424": ("OLMo-7B-0724.yaml", OLMO_7B_0424),
    "olmo_7b_0724": ("OLMo-7B-0724.yaml", OLMO_7B_0424),
    "olmo2_1b": ("OLMo2-1B-stage1.yaml", OLMO2_1B),
    "olmo2_7b": ("OLMo2-7B-stage1.yaml", OLMO2_7B),
    "olmo2_13b": ("OLMo2-13B-stage1.yaml", OLMO2_13B),
}

# The original's defaults (olmo/config.py, reference §1-2) for the fields a YAML leaves out.
ORIGINAL_DEFAULTS = {
    "model.n_kv_heads": None,
    "model.mlp_hidden_size": None,
    "model.layer_norm_eps": 1e-5,
    "model.attention_layer_norm": False,
    "model.norm_after": False,
    "model.clip_qkv": None,
    "model.rope_theta": 10000.0,
    "model.init_std": 0.02,
    "model.init_cutoff_factor": None,
    "model.emb_init_std": None,
    "optimizer.eps": 1e-5,
    "optimizer.decay_norm_and_bias": False,
    "optimizer.decay_embeddings": False,
    "scheduler.units": "steps",
    "scheduler.t_max": None,
    "scheduler.warmup_min_lr": None,
    "scheduler.grad_clip_warmup_steps": None,
    "scheduler.grad_clip_warmup_factor": None,
    "softmax_auxiliary_loss": False,
    "auxiliary_loss_multiplier": 1e-4,
    "data.memmap_dtype": "uint16",
    "data.instance_filter": None,
    "data.seed": None,
    "data.generate_attention_mask": False,
}
# Not read from the YAML: olmo_fn's own switches for what the original trainer did (see OriginalTrainerConfig).
NOT_IN_YAML = {"original_trainer.lagged_clip_warmup", "original_trainer.builtin_z_loss_multiplier"}


def recipe_value(cfg, dotted: str):
    value = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return asdict(value) if is_dataclass(value) else value


def differences(cfg, official: dict) -> dict:
    """{field: (recipe's value, official value)} for every field where they differ."""
    out = {}
    for key, want in official.items():
        got = recipe_value(cfg, key)
        if got != want or isinstance(got, bool) != isinstance(want, bool):
            out[key] = (got, want)
    return out


@functools.cache
def fixture(name: str) -> dict:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load((FIXTURES / name).read_text(encoding="utf-8"), Loader=loader)


def yaml_value(raw: dict, dotted: str):
    """The value of an olmo_fn field in an original YAML, as olmo_fn spells it; KeyError if the YAML has none."""
    if dotted == "compile":
        return raw["compile"] is not None  # null or {fullgraph: false}: per-block compile on
    section, _, name = dotted.rpartition(".")
    value = (raw[section] if section else raw)[name]
    if isinstance(value, str) and name not in ("max_duration",):
        try:
            value = float(value)  # PyYAML reads 1e-6 and 3e12 (no dot) as strings
        except ValueError:
            pass
    if name == "max_duration":
        value = str(value)
    if name == "betas":
        value = tuple(value)
    return value


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_builds_its_config(name):
    cfg = load_recipe(name).config()
    if RECIPES[name] is not None:
        assert num_params(cfg.model) == RECIPES[name]
    assert cfg.seed == SEEDS.get(name, 6198)


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_recipe_has_the_official_training_settings(name):
    yaml_name, official = OFFICIAL[name]
    cfg = load_recipe(name).config()
    assert differences(cfg, official) == {}, f"experiments/{name}.py disagrees with {yaml_name}"


@pytest.mark.parametrize("yaml_name", sorted({y for y, _ in OFFICIAL.values()}))
def test_official_values_are_the_yamls(yaml_name):
    """The dicts above say what the fixture YAML says (or, for a field it leaves out, the original's default)."""
    raw = fixture(yaml_name)
    for official in {id(d): d for y, d in OFFICIAL.values() if y == yaml_name}.values():
        wrong = {}
        for key, want in official.items():
            if key in NOT_IN_YAML:
                continue
            try:
                have = yaml_value(raw, key)
            except KeyError:
                assert key in ORIGINAL_DEFAULTS, f"{yaml_name} has no {key} and no default is listed for it"
                have = ORIGINAL_DEFAULTS[key]
            if have != want:
                wrong[key] = (want, have)
        assert wrong == {}, f"transcribed value vs {yaml_name}"


def test_a_wrong_transcription_is_caught():
    cfg = load_recipe("olmo2_7b").config()
    assert differences(cfg, OLMO2_7B) == {}
    scheduler, model = replace(cfg.scheduler, t_warmup=8_388_608), replace(cfg.model, rope_theta=1e4)
    bad = replace(cfg, scheduler=scheduler, model=model)
    assert set(differences(bad, OLMO2_7B)) == {"scheduler.t_warmup", "model.rope_theta"}
    assert set(differences(replace(cfg, compile=1), OLMO2_7B)) == {"compile"}  # 1 is not a bool


@pytest.mark.parametrize(
    ("yaml_name", "paths"),
    [("OLMo-1B.yaml", 249), ("OLMo-7B.yaml", 443), ("OLMo-7B-0724.yaml", 1033), ("OLMo-1.7-7B.yaml", 1033),
     ("OLMo2-7B-stage1.yaml", 1122), ("OLMo2-13B-stage1.yaml", 1122), ("OLMo2-1B-stage1.yaml", 1122)],
)  # fmt: skip
def test_fixture_yamls_list_the_official_token_files(yaml_name, paths):
    assert len(fixture(yaml_name)["data"]["paths"]) == paths


def test_the_stored_olmo_1_7_yaml_is_0724_with_an_early_batch_size():
    """configs/official/OLMo-1.7-7B.yaml (the 0424 config's early name, one stored version) differs from
    OLMo-7B-0724.yaml only in its s3:// token files and a 512 global batch; 0424 was trained with 1024."""
    early, final = fixture("OLMo-1.7-7B.yaml"), fixture("OLMo-7B-0724.yaml")
    assert (early["global_train_batch_size"], final["global_train_batch_size"]) == (512, 1024)
    public = [p.replace("s3://ai2-llm/", "https://olmo-data.org/") for p in early["data"]["paths"]]
    assert public == final["data"]["paths"]
    strip = lambda raw: {**raw, "global_train_batch_size": None, "data": {**raw["data"], "paths": None}}
    assert strip(early) == strip(final)


def test_each_official_recipe_has_its_own_save_folder_and_never_overwrites():
    configs = {name: load_recipe(name).config() for name in OFFICIAL}
    folders = [cfg.save_folder for cfg in configs.values()]
    assert len(set(folders)) == len(folders), folders
    assert len({cfg.run_name for cfg in configs.values()}) == len(configs)
    assert [name for name, cfg in configs.items() if cfg.save_overwrite] == []


def _run(args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_help_lists_every_field_with_the_recipe_default():
    out = _run(["experiments/olmo2_7b.py", "--help"])
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for flag in ("--run-name", "--max-duration", "--load-path", "--reset-trainer-state", "--model.d-model",
                 "--optimizer.learning-rate", "--scheduler.t-warmup", "--data.paths", "--try-load-latest-save"):  # fmt: skip
        assert flag in text, flag
    assert "OLMo-2-7B" in text and "(default: 4096)" in text


def test_dry_run_prints_parameters_and_writes_nothing(tmp_path):
    # one downstream task instead of the recipe's 23, whose tokenisation takes ~17 s of the preflight
    out = _run(
        ["experiments/olmo_7b_0724.py", "--dry_run", f"--save_folder={tmp_path}/run", "--evaluators", "piqa"]
    )
    assert out.returncode == 0, out.stderr
    assert "parameters: 6888095744" in out.stdout
    assert "flops per token:" in out.stdout and "memory per device" in out.stdout
    assert "preflight: passed (no data.paths given" in out.stdout
    assert not (tmp_path / "run").exists()


def test_long_context_dry_run_reports_memory_with_and_without_checkpointing_and_context_parallel():
    cfg = load_recipe("olmo3_7b_long_context").config()
    assert (
        cfg.model.max_sequence_length == 65_536
        and cfg.model.yarn is not None
        and cfg.data.generate_doc_lengths
    )
    assert (
        "sliding" in cfg.model.layer_kinds and not load_recipe("olmo3_7b").config().data.generate_doc_lengths
    )
    out = _run(["experiments/olmo3_7b_long_context.py", "--dry_run"])
    assert out.returncode == 0, out.stderr
    assert "parameters: 7298617344" in out.stdout
    lines = {line.split(":")[0]: line for line in out.stdout.splitlines() if "GiB" in line}
    for label in ("memory per device (estimate), no activation checkpointing",
                  "memory per device (estimate), full activation checkpointing"):  # fmt: skip
        assert label in lines, out.stdout[-2000:]
    (cp,) = [line for line in lines.values() if line.startswith("context parallelism")]
    assert all(f"{degree}: " in cp for degree in (2, 4, 8)), cp


def test_readme_dry_run_command_as_written():
    out = _run("python experiments/olmo_7b.py --dry_run".split()[1:])
    assert out.returncode == 0, out.stderr
    assert "parameters: 6888095744" in out.stdout and "preflight: passed" in out.stdout


def test_dry_run_runs_the_preflight_checks(tmp_path):
    out = _run(["experiments/olmo_7b_0724.py", "--dry_run", f"--save_folder={tmp_path}/run", "--evaluators", "piqa",
                "--data.paths=[/nonexistent/a.npy,/nonexistent/b.npy]"])  # fmt: skip
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [
        "error: /nonexistent/a.npy: file not found; check the path (and, for a URL, its bucket and credentials)"
    ]
    assert not (tmp_path / "run").exists()
