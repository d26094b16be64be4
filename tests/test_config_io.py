"""Configs round-trip through YAML; the CLI accepts the original OLMo's spellings."""

import dataclasses

import pytest
import yaml

from olmo_fn.config import InstanceFilterConfig, TrainConfig
from olmo_fn.config_io import config_from_dict, config_to_dict, dump_yaml, normalize_args, parse_cli
from olmo_fn.errors import ConfigError
from olmo_fn.model.presets import olmo2_7b


def test_yaml_round_trip_gives_the_same_config():
    cfg = TrainConfig(model=olmo2_7b(), run_name="rt")
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, instance_filter=InstanceFilterConfig()))
    back = config_from_dict(TrainConfig, yaml.safe_load(dump_yaml(cfg)))
    assert back == cfg
    assert isinstance(back.optimizer.betas, tuple)


def test_unknown_keys_and_bad_values_name_the_field():
    data = config_to_dict(TrainConfig())
    data["optimizer"]["learning_rte"] = 1.0
    with pytest.raises(ConfigError, match="optimizer.learning_rte"):
        config_from_dict(TrainConfig, data)
    data = config_to_dict(TrainConfig())
    data["model"]["n_kv_heads"] = 5
    with pytest.raises(ConfigError, match="model.n_heads"):
        config_from_dict(TrainConfig, data)


def test_original_list_syntax_is_expanded():
    assert normalize_args(["--data.paths=[a.npy,b.npy]", "--x=1"]) == [
        "--data.paths",
        "a.npy",
        "b.npy",
        "--x=1",
    ]
    assert normalize_args(["--data.label_mask_paths=[ m.npy ]"]) == ["--data.label_mask_paths", "m.npy"]


def test_seed_readme_command_lines_parse():
    args = [
        "--load_path=/ckpt/step1000-unsharded", "--save_folder=/runs/new", "--run_name=ft", "--save_overwrite",
        "--reset_trainer_state", "--data.paths=[/d/input_ids.npy]", "--data.label_mask_paths=[/d/label_mask.npy]",
        "--model.max-sequence-length=512", "--optimizer.learning-rate", "2e-5",
    ]  # fmt: skip
    cfg = parse_cli(TrainConfig, TrainConfig(), args)
    assert cfg.load_path == "/ckpt/step1000-unsharded" and cfg.save_folder == "/runs/new"
    assert cfg.run_name == "ft" and cfg.save_overwrite and cfg.reset_trainer_state
    assert cfg.data.paths == ["/d/input_ids.npy"] and cfg.data.label_mask_paths == ["/d/label_mask.npy"]
    assert cfg.model.max_sequence_length == 512 and cfg.optimizer.learning_rate == 2e-5
