"""Resumes at the edges: at the very end of an epoch (it goes on with the next, bitwise as if never stopped),
with nothing left to do (it says so and why, and writes nothing), and a fine-tuning run pointed at the save
folder it loads from with --save_overwrite (refused before anything is deleted)."""

import dataclasses

import pytest
import torch

from olmo_fn.checkpoint import find_latest
from olmo_fn.errors import ConfigError
from olmo_fn.run_context import Hooks
from olmo_fn.train import train
from tests.train.conftest import tiny_config


def _params(result) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in result.model.named_parameters()}


def test_a_resume_at_the_end_of_an_epoch_goes_on_with_the_next(tmp_path):
    # 100 instances in global batches of 4: 25 steps an epoch; stop after step 25, then train 26 and 27
    cfg = tiny_config(tmp_path, max_duration="27", save_interval_unsharded=25, eval_interval=None)
    straight = train(dataclasses.replace(cfg, save_folder=str(tmp_path / "straight")))
    train(dataclasses.replace(cfg, stop_at=25))
    epochs = []
    resumed = train(
        dataclasses.replace(cfg, try_load_latest_save=True),
        Hooks(after_step=[lambda run, b, m: epochs.append((run.state.step, run.state.epoch))]),
    )
    assert epochs == [(26, 1), (27, 1)]
    a, b = _params(straight), _params(resumed)
    assert all(a[k].equal(b[k]) for k in a)


def test_a_resume_with_nothing_left_says_so_and_writes_nothing(tmp_path, capsys):
    cfg = tiny_config(tmp_path, max_duration="3", eval_interval=None)
    train(cfg)
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    result = train(dataclasses.replace(cfg, max_duration="2", try_load_latest_save=True))
    out = capsys.readouterr()
    assert result.state.step == 3 and result.checkpoint is None
    assert (
        "nothing to train: the loaded checkpoint is at step 3 and the run ends at step 2 (max_duration=2); "
        "raise --max_duration, or pass --reset_trainer_state" in out.out + out.err
    )
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before


def test_save_overwrite_never_clears_the_folder_of_the_load_path(tmp_path):
    cfg = tiny_config(tmp_path, max_duration="2", eval_interval=None)
    train(cfg)
    checkpoint = find_latest(cfg.save_folder)
    finetune = dataclasses.replace(cfg, load_path=checkpoint, reset_trainer_state=True, save_overwrite=True)
    with pytest.raises(
        ConfigError, match=r"is in save_folder .*which --save_overwrite would clear before loading it"
    ):
        train(finetune)
    assert find_latest(cfg.save_folder) == checkpoint  # still there
    elsewhere = train(dataclasses.replace(finetune, save_folder=str(tmp_path / "ft")))
    assert elsewhere.checkpoint.startswith(str(tmp_path / "ft"))
