"""Many ranks on one save folder and on an evaluation set that leaves some ranks without rows.

A 2- and a 4-process run with --save_overwrite start in folders holding an earlier run's checkpoints (one
rank clears them, the others wait), and evaluate a 5-instance set with device_eval_batch_size=1 (the last
group leaves ranks empty; they run an uncounted dummy row so that FSDP's gathers line up). Both finish, their
folders hold only their own checkpoints, and every evaluation equals the one-process figure.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from olmo_fn.config import EvalConfig, ParallelConfig
from tests.distributed.launch import case_yaml, run_driver
from tests.train.conftest import SEQ


def _write(tmp: Path, name: str, **changes) -> Path:
    eval_file = tmp / "eval5.npy"
    if not eval_file.exists():
        (np.arange(5 * SEQ) % 60 + 2).astype(np.uint16).tofile(eval_file)  # exactly 5 instances
    base = dict(
        max_duration="6", stop_at=4, save_interval_unsharded=2, eval_interval=2, eval_on_load=True, save_overwrite=True,
        eval=EvalConfig(datasets={"five": [str(eval_file)]}, device_eval_batch_size=1),
    )  # fmt: skip
    return case_yaml(tmp, name, tmp / "runs" / name, **{**base, **changes})


def _launch(tmp: Path, nproc: int, config: Path) -> None:
    run_driver(tmp, nproc, [config], timeout=240)  # a hang (a rank waiting in a collective) fails here


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("shared_folder")
    _launch(tmp, 1, _write(tmp, "one", stop_at=None))
    for nproc, layout in ((2, ParallelConfig()), (4, ParallelConfig(dp_replicate=2, dp_shard=2))):
        name = f"ranks{nproc}"
        shutil.copytree(tmp / "runs" / "one", tmp / "runs" / name)  # an earlier run's checkpoints: 2, 4, 6
        _launch(tmp, nproc, _write(tmp, name, parallel=layout))
    return tmp


@pytest.mark.parametrize("nproc", [2, 4])
def test_overwrite_clears_the_folder_once_and_the_run_writes_its_own(runs, nproc):
    folder = runs / "runs" / f"ranks{nproc}"
    entries = sorted(p.name for p in folder.iterdir())
    assert [e for e in entries if e.startswith("step")] == ["step2-unsharded", "step4-unsharded"]
    assert not [e for e in entries if "tmp" in e]
    assert yaml.safe_load((folder / "config.yaml").read_text())["save_folder"] == str(folder)
    assert (folder / "train_data" / "global_indices.npy").exists()
    assert (folder / "latest-unsharded").resolve().name == "step4-unsharded"


@pytest.mark.parametrize("nproc", [2, 4])
def test_uneven_evaluation_gives_the_one_process_metrics(runs, nproc):
    one = json.loads((runs / "one.rank0.json").read_text())
    got = json.loads((runs / f"ranks{nproc}.rank0.json").read_text())
    assert sorted(got["evals"]) == ["0/five", "2/five", "4/five"]
    for key, value in got["evals"].items():
        assert value == pytest.approx(one["evals"][key], rel=1e-5), key
    for step in ("1", "2", "3", "4"):
        assert got["losses"][step] == pytest.approx(one["losses"][step], rel=1e-5)
