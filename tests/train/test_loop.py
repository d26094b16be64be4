"""The training loop end to end on a tiny model: checkpoints, config.yaml, data order, save-folder rules."""

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from olmo_fn.checkpoint import find_latest, load_checkpoint
from olmo_fn.config import TrainConfig
from olmo_fn.config_io import config_from_dict
from olmo_fn.data.order import build_global_indices
from olmo_fn.errors import ConfigError
from olmo_fn.model import Transformer
from olmo_fn.train import train


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_a_run_learns_and_writes_checkpoints_config_and_data_order(make_config):
    cfg = make_config(eval_on_load=True)
    result = train(cfg)
    run = Path(cfg.save_folder)
    assert result.state.step == 8 and result.state.tokens_seen == 8 * 4 * 32
    assert result.state.examples_seen_this_epoch == 32
    assert {p.name for p in run.glob("step*")} == {f"step{s}-unsharded" for s in (2, 4, 6, 8)}
    assert find_latest(str(run)).rstrip("/").endswith("step8-unsharded")
    assert config_from_dict(TrainConfig, yaml.safe_load((run / "config.yaml").read_text())) == cfg
    order = np.fromfile(run / "train_data" / "global_indices.npy", dtype=np.uint32)
    assert np.array_equal(order, build_global_indices(100, seed=1, epoch=0, world_size=1, drop_last=False))
    (start_step, start), (end_step, end) = result.eval_history[0], result.eval_history[-1]
    assert (start_step, end_step) == (0, 8)
    assert end["valid/CrossEntropyLoss"] < start["valid/CrossEntropyLoss"] - 0.2
    model = Transformer(cfg.model)
    loaded = load_checkpoint(str(run / "step8-unsharded"), model, None)
    assert loaded.trainer_state["step"] == 8
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name


def test_a_fresh_run_refuses_a_save_folder_with_checkpoints(make_config):
    cfg = make_config(max_duration="2")
    train(cfg)
    before = _tree_digest(Path(cfg.save_folder))
    with pytest.raises(ConfigError, match="--save_overwrite"):
        train(cfg)
    assert _tree_digest(Path(cfg.save_folder)) == before
    train(dataclasses.replace(cfg, save_overwrite=True, max_duration="4", save_interval_unsharded=4))
    assert {p.name for p in Path(cfg.save_folder).glob("step*")} == {"step4-unsharded"}


def test_try_load_latest_save_resumes_in_its_own_folder_without_overwrite(make_config):
    cfg = make_config(max_duration="8", stop_at=4)
    assert train(cfg).state.step == 4
    resumed = train(dataclasses.replace(cfg, stop_at=None, try_load_latest_save=True))
    assert resumed.state.step == 8


def test_reset_trainer_state_starts_over_from_loaded_weights(make_config, tmp_path):
    cfg = make_config(max_duration="4")
    first = train(cfg)
    fine_tune = dataclasses.replace(
        cfg,
        load_path=first.checkpoint,
        reset_trainer_state=True,
        save_folder=str(tmp_path / "ft"),
        max_duration="3",
    )
    result = train(fine_tune)
    assert result.state.step == 3 and result.state.examples_seen_this_epoch == 12


def test_epochs_reshuffle_with_seed_plus_epoch(make_config):
    cfg = make_config(max_duration="2ep", global_train_batch_size=20, device_train_microbatch_size=10,
                      save_interval_unsharded=None, eval_interval=None)  # fmt: skip
    result = train(cfg)
    assert result.state.step == 10 and result.state.epoch == 1
    order = np.fromfile(Path(cfg.save_folder) / "train_data" / "global_indices.npy", dtype=np.uint32)
    assert np.array_equal(order, build_global_indices(100, seed=1, epoch=1, world_size=1, drop_last=False))


def test_empty_data_paths_is_a_clear_error(make_config):
    cfg = make_config()
    with pytest.raises(ConfigError, match="data.paths is empty"):
        train(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, paths=[])))
