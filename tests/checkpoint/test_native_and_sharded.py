"""Native unsharded and DCP sharded checkpoints in one process: round trips, formats, commit protocol."""

import json
import os
import random

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open

from olmo_fn.checkpoint import (
    detect_kind,
    find_latest,
    load_checkpoint,
    model_config_of_checkpoint,
    save_checkpoint,
)
from olmo_fn.checkpoint.load import unshard
from olmo_fn.errors import CheckpointError, ConfigError
from tests.checkpoint.helpers import (
    assert_same_model,
    assert_same_optim,
    config_dict,
    fresh,
    tiny_cfg,
    trained,
    trainer_state,
)


def _next_step_loss(model, opt, cfg):
    tokens = torch.randint(0, cfg.vocab_size, (2, 16), generator=torch.Generator().manual_seed(9))
    loss = model(tokens).float().logsumexp(-1).mean()
    loss.backward()
    opt.step()
    return loss.item(), [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("sharded", [False, True])
def test_round_trip_restores_model_optimizer_rng_and_config(tmp_path, sharded):
    cfg = tiny_cfg()
    model, opt = trained(cfg)
    state = trainer_state()
    path = save_checkpoint(str(tmp_path), 2, model, opt, state, config_dict(cfg), sharded=sharded, keep=-1)
    assert path == str(tmp_path / ("step2" if sharded else "step2-unsharded"))
    assert detect_kind(path) == ("sharded" if sharded else "unsharded")

    model2, opt2 = fresh(cfg)
    loaded = load_checkpoint(path, model2, opt2)
    assert_same_model(model, model2)
    assert_same_optim(model, opt, model2, opt2)
    assert opt2.param_groups[0]["betas"] == (0.8, 0.95)
    # training continues identically
    assert _next_step_loss(model, opt, cfg)[0] == _next_step_loss(model2, opt2, cfg)[0]
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), model2.parameters()))

    ts = loaded.trainer_state
    assert {k: ts[k] for k in ("step", "tokens_seen", "examples_seen_this_epoch", "epoch", "world_size")} == {
        "step": 2, "tokens_seen": 128, "examples_seen_this_epoch": 8, "epoch": 0, "world_size": 1
    }  # fmt: skip
    assert ts["data_loader"] == state["data_loader"]
    random.setstate(ts["rng"]["python"])
    np.random.set_state(ts["rng"]["numpy"])
    torch.set_rng_state(ts["rng"]["torch"])
    draws = (random.random(), np.random.rand(), torch.rand(1).item())
    trainer_state()  # re-seeds to the saved state
    assert draws == (random.random(), np.random.rand(), torch.rand(1).item())

    assert loaded.config == config_dict(cfg) and loaded.kind == detect_kind(path)
    assert model_config_of_checkpoint(path) == cfg


def test_unsharded_format_is_safetensors_json_yaml_with_plain_names(tmp_path):
    cfg = tiny_cfg()
    model, opt = trained(cfg)
    path = save_checkpoint(
        str(tmp_path), 5, model, opt, trainer_state(), config_dict(cfg), sharded=False, keep=1
    )
    names = sorted(os.listdir(path))
    assert names == sorted(
        [
            "config.yaml",
            "manifest.json",
            "model.safetensors",
            "optim.safetensors",
            "train.json",
            "train.safetensors",
        ]
    )
    with safe_open(os.path.join(path, "model.safetensors"), "pt") as f:
        assert sorted(f.keys()) == sorted(model.state_dict())
        assert torch.equal(f.get_tensor("embeddings.weight"), model.embeddings.weight.detach())
    with safe_open(os.path.join(path, "optim.safetensors"), "pt") as f:
        assert "state.blocks.0.attention.q_proj.weight.exp_avg" in f.keys()
    assert yaml.safe_load(open(os.path.join(path, "config.yaml")))["model"]["d_model"] == 32
    assert json.load(open(os.path.join(path, "train.json")))["step"] == 2
    manifest = json.load(open(os.path.join(path, "manifest.json")))
    assert manifest["kind"] == "unsharded" and manifest["step"] == 5
    assert manifest["files"]["model.safetensors"]["size"] == os.path.getsize(
        os.path.join(path, "model.safetensors")
    )
    for name in names:  # no pickle anywhere: every file parses as safetensors, JSON or YAML
        full = os.path.join(path, name)
        if name.endswith(".safetensors"):
            safe_open(full, "pt").keys()
        else:
            (json.load if name.endswith(".json") else yaml.safe_load)(open(full))


def test_model_only_load_and_unshard_tool(tmp_path):
    cfg = tiny_cfg()
    model, opt = trained(cfg)
    path = save_checkpoint(
        str(tmp_path / "run"), 3, model, opt, trainer_state(3), config_dict(cfg), sharded=True, keep=1
    )
    model2, _ = fresh(cfg)
    assert load_checkpoint(path, model2, None).trainer_state["step"] == 3
    assert_same_model(model, model2)
    out = str(tmp_path / "flat")
    unshard(path, out)
    assert detect_kind(out) == "unsharded"
    model3, opt3 = fresh(cfg)
    loaded = load_checkpoint(out, model3, opt3)
    assert_same_model(model, model3)
    assert_same_optim(model, opt, model3, opt3)
    assert loaded.trainer_state["step"] == 3 and loaded.config["model"]["n_kv_heads"] == 2
    with pytest.raises(ConfigError, match="already exists; pass --overwrite"):
        unshard(path, out)


def test_latest_pointers_keep_and_find_latest(tmp_path):
    cfg = tiny_cfg()
    model, opt = trained(cfg, steps=1)
    folder = str(tmp_path)
    for step in (1, 2, 3):
        save_checkpoint(folder, step, model, opt, trainer_state(step), config_dict(cfg), sharded=True, keep=2)
        save_checkpoint(
            folder, step, model, opt, trainer_state(step), config_dict(cfg), sharded=False, keep=1
        )
    names = sorted(os.listdir(folder))
    assert names == ["latest", "latest-unsharded", "step2", "step3", "step3-unsharded"]
    assert os.readlink(tmp_path / "latest") == "step3"
    assert os.readlink(tmp_path / "latest-unsharded") == "step3-unsharded"
    assert find_latest(folder) == os.path.join(folder, "step3")  # sharded preferred on a tie
    save_checkpoint(folder, 4, model, opt, trainer_state(4), config_dict(cfg), sharded=False, keep=1)
    assert find_latest(folder) == os.path.join(folder, "step4-unsharded")
    assert find_latest(str(tmp_path / "missing")) is None
    with pytest.raises(ConfigError, match="keep"):
        save_checkpoint(folder, 5, model, opt, {}, {}, sharded=True, keep=0)


def test_unfinished_saves_are_ignored_and_cleaned(tmp_path):
    cfg = tiny_cfg()
    model, opt = trained(cfg, steps=1)
    folder = str(tmp_path)
    save_checkpoint(folder, 1, model, opt, trainer_state(1), config_dict(cfg), sharded=False, keep=-1)
    # an interrupted save: a -tmp folder, and a step folder without manifest (object-store style)
    (tmp_path / "step2-unsharded-tmp").mkdir()
    (tmp_path / "step2-unsharded-tmp" / "model.safetensors").write_bytes(b"partial")
    (tmp_path / "step3-unsharded").mkdir()
    (tmp_path / "step3-unsharded" / "config.yaml").write_text("model: {}\n")
    assert find_latest(folder) == os.path.join(folder, "step1-unsharded")
    with pytest.raises(CheckpointError, match="manifest|unfinished"):
        load_checkpoint(str(tmp_path / "step3-unsharded"), *fresh(cfg))
    save_checkpoint(folder, 4, model, opt, trainer_state(4), config_dict(cfg), sharded=False, keep=-1)
    assert sorted(os.listdir(folder)) == ["latest-unsharded", "step1-unsharded", "step4-unsharded"]


@pytest.mark.parametrize("sharded", [False, True])
def test_corrupt_file_is_reported_by_name(tmp_path, sharded):
    cfg = tiny_cfg()
    model, opt = trained(cfg, steps=1)
    path = save_checkpoint(
        str(tmp_path), 1, model, opt, trainer_state(1), config_dict(cfg), sharded=sharded, keep=1
    )
    victim = (
        os.path.join(path, "model_and_optim", "__0_0.distcp")
        if sharded
        else os.path.join(path, "model.safetensors")
    )
    data = bytearray(open(victim, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(victim, "wb").write(bytes(data))
    model2, opt2 = fresh(cfg)
    # unsharded files are checked while they are read; sharded ones only when asked (a second full read)
    with pytest.raises(CheckpointError, match=os.path.basename(victim) + ".*checksum"):
        load_checkpoint(path, model2, opt2, verify=sharded)
    if sharded:  # a truncated shard is caught by its size, without reading
        open(victim, "wb").write(bytes(data[:-1]))
        with pytest.raises(CheckpointError, match=os.path.basename(victim) + ".*bytes"):
            load_checkpoint(path, model2, opt2)


def test_unknown_folder_and_mismatched_model_fail_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="not a checkpoint olmo_fn recognises"):
        load_checkpoint(str(tmp_path), *fresh(tiny_cfg()))
    model, opt = trained(tiny_cfg(), steps=1)
    path = save_checkpoint(str(tmp_path), 1, model, opt, {}, {}, sharded=False, keep=1)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(path, *fresh(tiny_cfg(d_model=64)))
