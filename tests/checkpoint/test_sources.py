"""Full-state checkpoints as streams of named tensors: what each reader announces is what it yields, Hugging
Face folders split into index-sharded files, original folders saved under DDP, corruption found while reading."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from olmo_fn.checkpoint import load_checkpoint, save_checkpoint
from olmo_fn.checkpoint.load import open_source
from olmo_fn.checkpoint.source import collect
from olmo_fn.errors import CheckpointError
from tests.checkpoint.helpers import assert_same_model, config_dict, fresh, tiny_cfg, trained
from tests.checkpoint.original_writer import write_hf, write_original_dir


@pytest.fixture
def native(tmp_path):
    cfg = tiny_cfg()
    model, opt = trained(cfg)
    path = save_checkpoint(
        str(tmp_path / "run"), 2, model, opt, {"step": 2}, config_dict(cfg), sharded=False, keep=1
    )
    return cfg, model, opt, path


def test_each_reader_yields_what_it_announces(native, tmp_path):
    cfg, model, opt, path = native
    trainer = {"global_step": 2, "global_train_examples_seen_this_epoch": 4}
    write_original_dir(path, tmp_path / "olmo", trainer)
    write_hf(path, tmp_path / "hf")
    for folder, with_optim in ((path, True), (str(tmp_path / "olmo"), True), (str(tmp_path / "hf"), False)):
        source = open_source(folder)
        tensors = collect(source)
        assert [(e.name, e.shape, e.dtype) for e in source.entries] == [
            (k, tuple(t.shape), t.dtype) for k, t in tensors.items()
        ]
        assert any(k.startswith("optim.") for k in tensors) == with_optim, folder
        assert len(open_source(folder, with_optim=False).entries) == len(model.state_dict())


def test_hugging_face_folder_in_index_sharded_files(native, tmp_path):
    cfg, model, _, path = native
    write_hf(path, tmp_path / "hf")
    whole = load_file(tmp_path / "hf" / "model.safetensors")
    names = sorted(whole)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, keys in shards.items():
        save_file({k: whole[k] for k in keys}, tmp_path / "hf" / file, metadata={"format": "pt"})
    os.remove(tmp_path / "hf" / "model.safetensors")
    index = {"metadata": {}, "weight_map": {k: f for f, keys in shards.items() for k in keys}}
    (tmp_path / "hf" / "model.safetensors.index.json").write_text(json.dumps(index))
    loaded, _ = fresh(cfg)
    assert load_checkpoint(str(tmp_path / "hf"), loaded, None).kind == "hf"
    assert_same_model(model, loaded)


def test_original_folder_saved_under_ddp_loads_with_its_optimizer(native, tmp_path):
    cfg, model, opt, path = native
    write_original_dir(path, tmp_path / "olmo", {"global_step": 2})
    weights = torch.load(tmp_path / "olmo" / "model.pt", weights_only=True)
    torch.save({f"module.{k}": v for k, v in weights.items()}, tmp_path / "olmo" / "model.pt")
    model2, opt2 = fresh(cfg)
    assert load_checkpoint(str(tmp_path / "olmo"), model2, opt2).trainer_state["step"] == 2
    assert_same_model(model, model2)
    for p, p2 in zip(
        model.parameters(), model2.parameters()
    ):  # state; lr stays the run's, as the original does
        assert all(torch.equal(opt.state[p][k], opt2.state[p2][k]) for k in ("step", "exp_avg", "exp_avg_sq"))
    assert opt2.param_groups[0]["lr"] == 1e-3


def test_corrupt_optimizer_file_is_found_while_reading_and_skipped_when_not_read(native):
    cfg, model, _, path = native
    victim = os.path.join(path, "optim.safetensors")
    data = bytearray(open(victim, "rb").read())
    data[-5] ^= 0xFF
    open(victim, "wb").write(bytes(data))
    with pytest.raises(CheckpointError, match="optim.safetensors.*checksum"):
        load_checkpoint(path, *fresh(cfg))
    model2, _ = fresh(cfg)
    load_checkpoint(path, model2, None)  # the optimizer file is not read, so nothing to find
    assert_same_model(model, model2)
    open(victim, "wb").write(bytes(data[:-100]))
    with pytest.raises(CheckpointError, match="optim.safetensors"):
        load_checkpoint(path, *fresh(cfg))
