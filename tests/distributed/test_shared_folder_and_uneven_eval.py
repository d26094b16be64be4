"""Many ranks on one save folder and on an evaluation set that leaves some ranks without rows.

A 2- and a 4-process run with --save_overwrite start in folders holding an earlier run's checkpoints (one
rank clears them, the others wait), and evaluate a 5-instance set with device_eval_batch_size=1 (the last
group leaves ranks empty; they run an uncounted dummy row so that FSDP's gathers line up). Both finish, their
folders hold only their own checkpoints, and every evaluation equals the one-process figure. The runs are
shared_runs.py's "overwrite" cases (a launch a hang would leave waiting in a collective fails at its timeout).
"""

import json

import pytest
import yaml


@pytest.fixture(scope="module")
def runs(shared_runs):
    return shared_runs


@pytest.mark.parametrize("nproc", [2, 4])
def test_overwrite_clears_the_folder_once_and_the_run_writes_its_own(runs, nproc):
    folder = runs / "runs" / f"overwrite{nproc}"
    entries = sorted(p.name for p in folder.iterdir())
    assert [e for e in entries if e.startswith("step")] == ["step2-unsharded", "step4-unsharded"]
    assert not [e for e in entries if "tmp" in e]
    assert yaml.safe_load((folder / "config.yaml").read_text())["save_folder"] == str(folder)
    assert (folder / "train_data" / "global_indices.npy").exists()
    assert (folder / "latest-unsharded").resolve().name == "step4-unsharded"


@pytest.mark.parametrize("nproc", [2, 4])
def test_uneven_evaluation_gives_the_one_process_metrics(runs, nproc):
    one = json.loads((runs / "overwrite1.rank0.json").read_text())
    got = json.loads((runs / f"overwrite{nproc}.rank0.json").read_text())
    assert sorted(got["evals"]) == ["0/five", "2/five", "4/five"]
    for key, value in got["evals"].items():
        assert value == pytest.approx(one["evals"][key], rel=1e-5), key
    for step in ("1", "2", "3", "4"):
        assert got["losses"][step] == pytest.approx(one["losses"][step], rel=1e-5)
