"""A save into a filesystem that fills up mid-write (a small tmpfs mounted by the test): one clear error,
nothing published, the previous checkpoint and its pointer intact and loadable, no temporary folder left;
in one process and on 2 gloo ranks, for unsharded and sharded checkpoints."""

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from olmo_fn.checkpoint import find_latest, load_checkpoint, model_config_of_checkpoint
from olmo_fn.errors import CheckpointError
from olmo_fn.model import Transformer
from olmo_fn.train import train
from tests.train.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("mount"), reason="mounting a small tmpfs needs root"
)


@pytest.fixture
def small_disk(tmp_path):
    """mount(size) -> a fresh tmpfs of `size` bytes; unmounted at the end."""
    mounts = []

    def mount(size: int) -> Path:
        where = tmp_path / f"disk{len(mounts)}"
        where.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
        mounts.append(where)
        return where

    yield mount
    for where in mounts:
        subprocess.run(["umount", str(where)], check=False)


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _assert_left_intact(save_folder: Path, name: str) -> None:
    names = sorted(p.name for p in save_folder.iterdir())
    assert not [n for n in names if "tmp" in n], names  # no partial folder left
    path = str(save_folder / name)
    assert find_latest(str(save_folder)) == path
    load_checkpoint(path, Transformer(model_config_of_checkpoint(path)), None)  # loads, checksums and all


@pytest.mark.parametrize("sharded", [False, True], ids=["unsharded", "sharded"])
def test_a_full_disk_fails_the_save_in_one_line_and_keeps_the_previous_checkpoint(
    tmp_path, small_disk, sharded
):
    kinds = {"save_interval": 2, "save_num_unsharded_checkpoints_to_keep": 0} if sharded else {}
    cfg = tiny_config(tmp_path, max_duration="4", save_interval_unsharded=2, eval_interval=None, **kinds)
    first = train(dataclasses.replace(cfg, save_folder=str(tmp_path / "probe"), max_duration="2"))
    disk = small_disk(int(_size(Path(first.checkpoint)) * 1.5))  # room for one checkpoint, not two
    run = disk / "run"
    with pytest.raises(CheckpointError) as failed:
        train(dataclasses.replace(cfg, save_folder=str(run)))
    name = "step2" if sharded else "step2-unsharded"
    message = str(failed.value)
    assert "\n" not in message and "No space left on device" in message, message
    assert message.startswith(f"{run}: step4{'' if sharded else '-unsharded'} was not saved")
    assert f"nothing was published and the previous checkpoint {run / name} is intact" in message
    _assert_left_intact(run, name)


def test_on_two_ranks_the_run_stops_with_one_line_and_no_traceback(tmp_path, small_disk):
    tokens = tmp_path / "tokens.npy"
    np.random.default_rng(0).integers(0, 4096, size=200 * 64).astype(np.uint16).tofile(tokens)
    flags = ["experiments/olmo_tiny.py", "--model.n_layers=1", "--model.d_model=64", "--model.n_heads=2",
             "--model.mlp_hidden_size=128", "--model.max_sequence_length=64", "--global_train_batch_size=4",
             "--device_train_microbatch_size=2", "--tracking.no-aim", "--tracking.progress-bar=False",
             "--no-eval_on_load", "--max_duration=4", "--save_interval=2", "--save_interval_unsharded=4",
             f"--data.paths=[{tokens}]"]  # fmt: skip
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *flags]
    probe = subprocess.run([*torchrun, "--max_duration=2", f"--save_folder={tmp_path / 'probe'}"], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-3000:]
    run = small_disk(int(_size(tmp_path / "probe" / "step2") * 1.5)) / "run"
    out = subprocess.run(
        [*torchrun, f"--save_folder={run}"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    # (torchrun stops the other rank as soon as one exits, so it may not get to print its line)
    assert out.returncode != 0 and errors and set(errors) == {errors[0]}, out.stderr[-3000:]
    assert f"error: {run}: step4 was not saved (No space left on device" in errors[0], errors[0]
    workers = out.stderr.split("failed (exitcode")[0]  # what the ranks printed, before torchrun's report
    assert "Traceback" not in workers and "Exception in thread" not in workers, workers[-3000:]
    _assert_left_intact(run, "step2")
