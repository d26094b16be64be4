"""Original OLMo checkpoint folders: the fixtures written by the original code, and folders the test writes
in exactly the original layout (base64-pickled safetensors keys, train.pt with Paths and numpy RNG)."""

import base64
import os
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from olmo_fn.checkpoint import detect_kind, load_checkpoint, model_config_of_checkpoint
from olmo_fn.checkpoint.olmo import from_olmo_state_dict
from olmo_fn.checkpoint.olmo_dir import decode_key
from olmo_fn.errors import CheckpointError
from olmo_fn.model import Transformer


def _logits(model, fixtures, name):
    tokens = torch.from_numpy(np.load(fixtures / "original_olmo" / f"{name}.tokens.npy"))
    with torch.no_grad():
        return model(tokens)


def _encode_key(path: tuple, pickled: bool) -> str:  # the original's safetensors_util.encode_key
    return base64.urlsafe_b64encode(pickle.dumps((path, pickled))).decode("ascii")


def _flatten(d: dict, prefix: tuple = ()) -> dict:  # the original's flatten_dict
    out = {}
    for key, value in d.items():
        if isinstance(value, torch.Tensor):
            out[_encode_key(prefix + (key,), False)] = value
        elif isinstance(value, dict):
            out.update(_flatten(value, prefix + (key,)))
        else:
            out[_encode_key(prefix + (key,), True)] = torch.frombuffer(
                bytearray(pickle.dumps(value)), dtype=torch.uint8
            )
    return out


def test_release_layout_safetensors_fixture(fixtures):
    """olmo1_st holds the olmo1 weights after the optimizer step, keys base64-pickled as in releases."""
    path = fixtures / "original_olmo" / "olmo1_st"
    cfg = model_config_of_checkpoint(str(path))
    model = Transformer(cfg)
    loaded = load_checkpoint(str(path), model, torch.optim.AdamW(model.parameters()))
    assert loaded.trainer_state is None  # release folders without train.pt
    raw = safetensors.torch.load_file(path / "model.safetensors")
    decoded = {pickle.loads(base64.urlsafe_b64decode(k))[0][0]: v for k, v in raw.items()}  # trusted fixture
    expected = from_olmo_state_dict(decoded, cfg)
    assert sorted(expected) == sorted(model.state_dict())
    assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.items())
    before = from_olmo_state_dict(torch.load(path.parent / "olmo1" / "model.pt", weights_only=True), cfg)
    assert all(0 < (before[k] - v).abs().max() <= 4.1e-4 for k, v in expected.items())  # one step of lr 4e-4


@pytest.mark.parametrize("name, base", [("olmo1", "olmo1"), ("olmo2", "olmo2")])
def test_fixture_folders_load_with_the_original_logits(fixtures, name, base):
    path = str(fixtures / "original_olmo" / name)
    assert detect_kind(path) == "olmo"
    cfg = model_config_of_checkpoint(path)
    model = Transformer(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loaded = load_checkpoint(path, model, opt)
    expected = torch.from_numpy(np.load(fixtures / "original_olmo" / f"{base}.logits.npy"))
    assert (_logits(model, fixtures, base) - expected).abs().max().item() < 1e-5
    assert loaded.kind == "olmo" and loaded.config["model"]["d_model"] == 64
    ts = loaded.trainer_state
    assert (ts["step"], ts["examples_seen_this_epoch"], ts["tokens_seen"], ts["epoch"], ts["world_size"]) == (
        1,
        4,
        256,
        0,
        1,
    )
    assert isinstance(ts["rng"]["torch"], torch.Tensor)
    # optimizer state: the original's fused exp_avg split like the weights
    original = torch.load(fixtures / "original_olmo" / base / "optim.pt", weights_only=True)
    names = list(torch.load(fixtures / "original_olmo" / base / "model.pt", weights_only=True))
    exp_avg = from_olmo_state_dict({n: original["state"][i]["exp_avg"] for i, n in enumerate(names)}, cfg)
    for pname, p in model.named_parameters():
        assert torch.equal(opt.state[p]["exp_avg"], exp_avg[pname]), pname
        assert opt.state[p]["step"].item() == 1.0
    assert opt.param_groups[0]["lr"] == 1e-3  # lr comes from the run's config, as in the original


def test_written_original_layout_with_safetensors_optim_and_full_train_pt(fixtures, tmp_path):
    src = fixtures / "original_olmo" / "olmo2"
    shutil.copy(src / "config.yaml", tmp_path / "config.yaml")
    model_sd = torch.load(src / "model.pt", weights_only=True)
    optim = torch.load(src / "optim.pt", weights_only=True)
    names = list(model_sd)
    optim["state"] = {names[i]: v for i, v in optim["state"].items()}  # newer files key by name
    optim["param_groups"][0]["param_names"] = names
    optim["param_groups"][0]["params"] = names
    safetensors.torch.save_file(_flatten(model_sd), tmp_path / "model.safetensors")
    safetensors.torch.save_file(_flatten(optim), tmp_path / "optim.safetensors")
    random.seed(3)
    np.random.seed(3)
    train = {
        "epoch": 1, "global_step": 7, "global_train_examples_seen_this_epoch": 12, "global_train_tokens_seen": 900,
        "world_size": 2, "checkpoints": [Path("run/step7")], "unsharded_checkpoints": [Path("run/step7-unsharded")],
        "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(), "cuda": []},
    }  # fmt: skip
    torch.save(train, tmp_path / "train.pt")
    expected = random.random(), np.random.rand()

    cfg = model_config_of_checkpoint(str(tmp_path))
    model = Transformer(cfg)
    opt = torch.optim.AdamW(model.parameters())
    ts = load_checkpoint(str(tmp_path), model, opt).trainer_state
    assert (ts["step"], ts["epoch"], ts["examples_seen_this_epoch"], ts["tokens_seen"], ts["world_size"]) == (
        7,
        1,
        12,
        900,
        2,
    )
    random.setstate(ts["rng"]["python"])
    np.random.set_state(ts["rng"]["numpy"])
    assert (random.random(), np.random.rand()) == expected
    reference = torch.from_numpy(np.load(fixtures / "original_olmo" / "olmo2.logits.npy"))
    assert (_logits(model, fixtures, "olmo2") - reference).abs().max().item() < 1e-5
    q = model.blocks[0].attention.q_proj.weight
    assert torch.equal(opt.state[q]["exp_avg_sq"], optim["state"][names[6]]["exp_avg_sq"][:64])


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickled_code_is_refused(fixtures, tmp_path):
    shutil.copytree(fixtures / "original_olmo" / "olmo1", tmp_path / "ck")
    torch.save({"global_step": 1, "rng": _Evil()}, tmp_path / "ck" / "train.pt")
    cfg = model_config_of_checkpoint(str(tmp_path / "ck"))
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(str(tmp_path / "ck"), Transformer(cfg), None)
    evil_key = base64.urlsafe_b64encode(pickle.dumps(_Evil())).decode()
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        decode_key(evil_key)
    with pytest.raises(CheckpointError, match="not an original OLMo key"):
        decode_key(base64.urlsafe_b64encode(pickle.dumps(([1.5], False))).decode())
