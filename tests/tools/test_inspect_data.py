"""inspect_data finds the batch a run trained at a global step across epochs, from every epoch's kept order
file; --epoch/--batch address a batch within an epoch; SFT label masks are shown; the docstring's examples
run as written."""

import dataclasses
import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from olmo_fn.checkpoint.run_folder import write_config
from olmo_fn.config_io import config_to_dict
from olmo_fn.data.memmap import build_token_dataset
from olmo_fn.data.order import build_global_indices
from olmo_fn.errors import ConfigError
from olmo_fn.recipes import load_recipe
from olmo_fn.run_context import Hooks
from olmo_fn.train import train
from tests.tools.test_data_tools import load_tool
from tests.train.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    """A 10-step run over 2 epochs (100 instances, 20 per batch) and the instance ids each step trained."""
    tmp = tmp_path_factory.mktemp("two_epochs")
    cfg = tiny_config(tmp, max_duration="10", global_train_batch_size=20, device_train_microbatch_size=20,
                      save_interval_unsharded=None, eval_interval=None)  # fmt: skip
    trained = {}

    def after_step(run, step, metrics, context):
        if context.get("subset") == "train":
            trained[step] = run.state.epoch

    train(cfg, hooks=Hooks(before_log=[after_step]))
    return cfg, trained


def test_every_epoch_order_is_kept_and_a_step_maps_to_its_epoch(two_epochs):
    cfg, trained = two_epochs
    data = Path(cfg.save_folder) / "train_data"
    orders = [build_global_indices(100, seed=1, epoch=e) for e in (0, 1)]
    for e in (0, 1):
        assert np.array_equal(np.fromfile(data / f"global_indices_epoch{e}.npy", dtype=np.uint32), orders[e])
    assert np.array_equal(np.fromfile(data / "global_indices.npy", dtype=np.uint32), orders[1])
    tool = load_tool("inspect_data")
    for step, epoch, batch in [(1, 0, 0), (5, 0, 4), (6, 1, 0), (10, 1, 4)]:
        assert trained[step] == epoch
        instances = tool.inspect_data(step=step, save_folder=cfg.save_folder, as_json=True)
        assert [i["index"] for i in instances] == orders[epoch][batch * 20 : (batch + 1) * 20].tolist()
        assert {(i["step"], i["epoch"], i["batch"]) for i in instances} == {(step, epoch, batch)}
    by_batch = tool.inspect_data(epoch=1, batch=0, save_folder=cfg.save_folder, as_json=True)
    assert by_batch == tool.inspect_data(step=6, save_folder=cfg.save_folder, as_json=True)


def test_positions_that_do_not_exist_are_one_line_errors(two_epochs):
    cfg, _ = two_epochs
    tool = load_tool("inspect_data")
    with pytest.raises(ConfigError, match="steps count from 1"):
        tool.inspect_data(step=0, save_folder=cfg.save_folder)
    with pytest.raises(ConfigError, match="batches 0 to 4; use --step"):
        tool.inspect_data(batch=5, save_folder=cfg.save_folder)
    with pytest.raises(ConfigError, match="exactly one of --step"):
        tool.inspect_data(step=2, batch=1, save_folder=cfg.save_folder)


def test_sft_label_masks_are_shown(tmp_path, capsys):
    cfg = tiny_config(tmp_path, global_train_batch_size=4)
    tokens = Path(cfg.data.paths[0])
    mask = np.random.default_rng(0).random(50 * 32) < 0.5
    mask.tofile(tmp_path / "mask.npy")
    sft = dataclasses.replace(cfg.data, paths=[str(tokens)], label_mask_paths=[str(tmp_path / "mask.npy")])
    folder = tmp_path / "run"
    write_config(str(folder), config_to_dict(dataclasses.replace(cfg, data=sft)))
    instances = load_tool("inspect_data").inspect_data(step=1, save_folder=str(folder))
    order = build_global_indices(50, seed=1)
    for inst, index in zip(instances, order[:4].tolist(), strict=True):
        assert inst["index"] == index
        assert inst["label_mask"] == mask[index * 32 : (index + 1) * 32].tolist()
    shown = [line for line in capsys.readouterr().out.splitlines() if line.startswith("label_mask: ")]
    assert shown[0] == "label_mask: " + "".join("1" if m else "0" for m in instances[0]["label_mask"])


def test_the_docstring_examples_run_as_written(tmp_path, monkeypatch, capsys):
    import tyro

    tiny = load_recipe("olmo_tiny")
    cfg = tiny.with_default_corpus(tiny.config())
    monkeypatch.chdir(tmp_path)
    write_config(cfg.save_folder, config_to_dict(cfg))  # runs/olmo-tiny, as the tiny run leaves it
    tool = load_tool("inspect_data")
    examples = [line.split() for line in tool.__doc__.splitlines() if "python tools/inspect_data.py" in line]
    assert len(examples) == 3
    results = {}
    for words in examples:
        assert words[:2] == ["python", "tools/inspect_data.py"]
        results[shlex.join(words[2:])] = tyro.cli(tool.inspect_data, args=words[2:])
        capsys.readouterr()
    step200, epoch1, step3 = results.values()
    dataset = build_token_dataset(cfg.data, seq_len=cfg.model.max_sequence_length)
    per_epoch = len(dataset) // cfg.global_train_batch_size  # drop_last: 147 batches
    assert step200[0]["epoch"] == 1 and step200[0]["batch"] == 199 - per_epoch
    assert epoch1[0]["step"] == per_epoch + 1 and (step3[0]["epoch"], step3[0]["batch"]) == (0, 2)
    assert json.loads(json.dumps(epoch1))[0]["input_ids"]
