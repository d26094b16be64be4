"""FSDP, TP, TP + sequence/loss parallel, FSDP x TP and HSDP on CPU gloo: the same losses, evaluation, batches,
initial parameters and saved checkpoint as one process, and a sharded checkpoint of 2 processes resumed by 1
and by 4.

The runs are shared_runs.py's (one launch of 2 processes and one of 4 for several test files, the
single-process runs in the test process). Median step times per case are printed (pytest -s) for the
record.
"""

import json
import statistics
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.distributed.shared_runs import TRAIN_LAYOUTS as LAYOUTS

STEPS = ["1", "2", "3", "4", "5", "6"]


def _records(tmp: Path, name: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(tmp.glob(f"{name}.rank*.json"))]


@pytest.fixture(scope="module")
def runs(shared_runs) -> Path:
    for name in ("one", *LAYOUTS, "sharded_by2-one", "sharded_by2-fsdp_tp4", "olmo3", "olmo3_fsdp_tp4"):
        times = _records(shared_runs, name)[0]["step_times"]
        print(f"{name}: median step {statistics.median(times) * 1000:.0f} ms over {len(times)} steps")
    return shared_runs


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_losses_match_one_process(runs, layout):
    one, got = _records(runs, "one")[0], _records(runs, layout)[0]
    assert sorted(got["losses"]) == sorted(one["losses"]) == STEPS
    for step, loss in one["losses"].items():
        assert got["losses"][step] == pytest.approx(loss, rel=1e-5), step
    assert sorted(got["evals"]) == sorted(one["evals"]) == ["6/valid"]  # the evaluation after the last step
    assert got["evals"]["6/valid"] == pytest.approx(one["evals"]["6/valid"], rel=1e-5)


def test_olmo3_windows_yarn_and_document_masks_train_alike_under_fsdp_and_tp(runs):
    one, four = _records(runs, "olmo3")[0]["losses"], _records(runs, "olmo3_fsdp_tp4")[0]["losses"]
    assert sorted(four) == sorted(one) == STEPS
    for step, loss in one.items():
        assert four[step] == pytest.approx(loss, rel=1e-5), step
    plain = _records(runs, "one")[0]["losses"]
    assert all(abs(one[s] - plain[s]) > 1e-4 for s in one)  # the OLMo 3 attention changed what was trained


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_each_rank_reads_its_slice_of_the_global_batches(runs, layout):
    global_batches = _records(runs, "one")[0]["batches"]
    records = _records(runs, layout)
    assert len(records) == records[0]["world_size"] > 1
    for rec in records:  # data-parallel rank r of n reads rows r, r + n, ... (the original OLMo's slicing)
        expected = [b[rec["dp_rank"] :: rec["dp_size"]] for b in global_batches]
        assert rec["batches"] == expected, rec["rank"]


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_initial_parameters_are_the_same_for_every_layout(runs, layout):
    one = load_file(str(runs / "one.init.safetensors"))
    got = load_file(str(runs / f"{layout}.init.safetensors"))
    assert sorted(got) == sorted(one)
    for name, tensor in one.items():
        assert torch.equal(got[name], tensor), name


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_the_last_steps_checkpoint_holds_the_one_process_weights(runs, layout):
    """Each layout's final (unsharded) save gathers its shards into the model one process trained."""
    one = load_file(str(runs / "runs" / "one" / "step6-unsharded" / "model.safetensors"))
    got = load_file(str(runs / "runs" / layout / "step6-unsharded" / "model.safetensors"))
    assert sorted(got) == sorted(one)
    for name, tensor in one.items():
        torch.testing.assert_close(got[name], tensor, rtol=1e-4, atol=5e-5, msg=name)
    assert (runs / "runs" / layout / "step5" / "model_and_optim" / ".metadata").exists()  # and a sharded one


def test_sharded_checkpoint_of_two_resumes_on_one_and_four(runs):
    one, four = (
        _records(runs, "sharded_by2-one")[0]["losses"],
        _records(runs, "sharded_by2-fsdp_tp4")[0]["losses"],
    )
    assert sorted(one) == sorted(four) == ["6"]
    assert four["6"] == pytest.approx(one["6"], rel=1e-5)
    assert one["6"] < _records(runs, "one")[0]["losses"]["1"]  # it continued the trained model
