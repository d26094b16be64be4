"""Every checkpoint kind loads on any number of ranks and any layout, and training continues exactly.

Two runs write step-5 checkpoints (sharded and unsharded): one process, and FSDP on 2 processes. From
those the test makes an original OLMo folder (model.pt, optim.pt with integer ids, train.pt; from the
2-process run) and a Hugging Face folder (from the 1-process run). Each of the six is then loaded by one
process, by FSDP and by TP on 2, and by FSDP x TP and HSDP on 4, for one more step: the step-6 loss equals
the uninterrupted run's (the HF folder, which has no optimizer or trainer state, gives the step-1 loss of a
run that loads the same weights with both states reset).
"""

import json
from pathlib import Path

import pytest
import torch

from olmo_fn.config import ParallelConfig
from tests.checkpoint.original_writer import write_hf, write_original_dir
from tests.distributed.launch import case_yaml, run_driver

LAYOUTS = {
    1: {"one": ParallelConfig()},
    2: {"fsdp2": ParallelConfig(), "tp2": ParallelConfig(tp=2)},
    4: {"fsdp_tp4": ParallelConfig(dp_shard=2, tp=2), "hsdp4": ParallelConfig(dp_replicate=2, dp_shard=2)},
}
KINDS = ["unsharded_by1", "sharded_by1", "unsharded_by2", "sharded_by2", "olmo_by2", "hf_by1"]


def _write(tmp: Path, name: str, **changes) -> Path:
    base = {
        "max_duration": "6",
        "eval_interval": None,
        "save_interval_unsharded": None,
        "save_interval": None,
    }
    return case_yaml(tmp, name, tmp / "runs" / name, **{**base, **changes})


_launch = run_driver


def _losses(tmp: Path, name: str) -> dict[str, float]:
    return json.loads((tmp / f"{name}.rank0.json").read_text())["losses"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("load_everywhere")
    writer = {"save_interval": 5, "save_interval_unsharded": 5}
    _launch(tmp, 1, [_write(tmp, "write1", **writer)])
    _launch(tmp, 2, [_write(tmp, "write2", **writer)])
    folders = {
        f"{kind}_by{n}": tmp / "runs" / f"write{n}" / name
        for n in (1, 2)
        for kind, name in (("sharded", "step5"), ("unsharded", "step5-unsharded"))
    }
    trainer = {"global_step": 5, "global_train_examples_seen_this_epoch": 20, "global_train_tokens_seen": 640,
               "epoch": 0, "world_size": 2}  # fmt: skip
    folders["olmo_by2"] = tmp / "olmo_by2"
    write_original_dir(str(folders["unsharded_by2"]), folders["olmo_by2"], trainer)
    folders["hf_by1"] = tmp / "hf_by1"
    write_hf(str(folders["unsharded_by1"]), folders["hf_by1"])
    reset = {"reset_trainer_state": True, "reset_optimizer_state": True, "max_duration": "1"}
    for nproc, layouts in LAYOUTS.items():
        cases = [
            _write(tmp, f"{kind}-{layout}", parallel=par, load_path=str(folders[kind]),
                   **({"max_duration": "1"} if kind == "hf_by1" else {}))
            for layout, par in layouts.items()
            for kind in KINDS
        ]  # fmt: skip
        if nproc == 1:
            cases.append(_write(tmp, "reset-reference", load_path=str(folders["unsharded_by1"]), **reset))
        _launch(tmp, nproc, cases)
    return tmp


@pytest.mark.parametrize("layout", [name for layouts in LAYOUTS.values() for name in layouts])
@pytest.mark.parametrize("kind", KINDS)
def test_next_step_loss_is_the_uninterrupted_runs(runs, kind, layout):
    got = _losses(runs, f"{kind}-{layout}")
    if kind == "hf_by1":
        assert list(got) == ["1"]
        assert got["1"] == pytest.approx(_losses(runs, "reset-reference")["1"], rel=1e-5)
        return
    uninterrupted = _losses(runs, "write1")
    assert list(got) == ["6"]  # it resumed at step 5
    assert got["6"] == pytest.approx(uninterrupted["6"], rel=1e-5)


def test_the_two_writers_agree(runs):
    one, two = _losses(runs, "write1"), _losses(runs, "write2")
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-5)
    assert one["6"] < one["1"]


def test_loaded_weights_are_the_saved_ones(runs):
    """The initial parameters every layout reports after loading are the step-5 weights, bit for bit."""
    from safetensors.torch import load_file

    saved = load_file(str(runs / "runs" / "write1" / "step5-unsharded" / "model.safetensors"))
    for layouts in LAYOUTS.values():
        for layout in layouts:
            got = load_file(str(runs / f"unsharded_by1-{layout}.init.safetensors"))
            assert sorted(got) == sorted(saved)
            assert all(torch.equal(got[k], saved[k]) for k in saved), layout
