"""Loop options: a compiled train step, a Hugging Face directory as initialisation, the progress bar."""

import dataclasses
from pathlib import Path

import pytest
import torch

from olmo_fn.checkpoint import load_checkpoint
from olmo_fn.checkpoint.hf_dir import write_hf_dir
from olmo_fn.errors import ConfigError
from olmo_fn.eval import build_eval_datasets, evaluate_lm
from olmo_fn.model import Transformer, init_weights
from olmo_fn.train import train


@pytest.mark.slow
def test_compiled_blocks_train_like_eager(make_config, tmp_path):
    cfg = make_config(max_duration="3", save_interval_unsharded=None, eval_interval=None)
    # eps 1e-5 (the original's default) so Adam does not blow fp32 rounding of near-zero grads up to lr size
    cfg = dataclasses.replace(cfg, optimizer=dataclasses.replace(cfg.optimizer, learning_rate=1e-3, eps=1e-5))
    eager = train(cfg)
    compiled = train(dataclasses.replace(cfg, compile=True, save_folder=str(tmp_path / "compiled")))
    compiled_params = compiled.model.state_dict()  # Module.compile() keeps the parameter names
    for name, tensor in eager.model.state_dict().items():
        assert torch.allclose(tensor, compiled_params[name], rtol=1e-4, atol=1e-5), name


def test_a_hugging_face_directory_initialises_a_run(make_config, tmp_path):
    cfg = make_config(max_duration="1", eval_on_load=True, save_interval_unsharded=None)
    source = Transformer(cfg.model)
    init_weights(source, cfg.model, seed=123)
    hf_dir = tmp_path / "hf"
    write_hf_dir(str(hf_dir), source.state_dict(), cfg.model)
    result = train(dataclasses.replace(cfg, load_path=str(hf_dir)))
    assert result.state.step == 1
    expected = evaluate_lm(source, build_eval_datasets(cfg.eval, cfg.data, cfg.model)["valid"], batch_size=4)
    assert result.eval_history[0][1]["valid/CrossEntropyLoss"] == pytest.approx(
        expected["CrossEntropyLoss"], rel=1e-6
    )
    reloaded = Transformer(cfg.model)
    assert load_checkpoint(str(hf_dir), reloaded, None).trainer_state is None


def test_progress_bar_shows_loss_and_throughput(make_config, capsys):
    cfg = make_config(max_duration="3", save_interval_unsharded=None, eval_interval=None)
    train(dataclasses.replace(cfg, tracking=dataclasses.replace(cfg.tracking, progress_bar=True)))
    err = capsys.readouterr().err
    assert "test-run" in err and "3/3" in err
    assert "CrossEntropyLoss=" in err and "tokens_per_second=" in err


def test_a_paths_file_trains_on_the_same_data_in_the_same_order(make_config, tmp_path):
    cfg = make_config(max_duration="3", save_interval_unsharded=None, eval_interval=None)
    listing = tmp_path / "lists" / "mix.txt"
    listing.parent.mkdir()
    listing.write_text("# our mix\n" + "\n".join(f"../data/{Path(p).name}" for p in cfg.data.paths) + "\n")
    straight = train(cfg).model.state_dict()
    from_list = make_config(
        max_duration="3", save_interval_unsharded=None, eval_interval=None, save_overwrite=True,
        data=dataclasses.replace(cfg.data, paths=[], paths_file=str(listing)),
    )  # fmt: skip
    listed = train(from_list).model.state_dict()
    assert all(torch.equal(straight[k], listed[k]) for k in straight)
    both = make_config(data=dataclasses.replace(cfg.data, paths_file=str(listing)), dry_run=True)
    with pytest.raises(ConfigError, match="data.paths and data.paths_file are both set"):
        train(both)
