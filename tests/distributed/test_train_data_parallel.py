"""The same experiment under torchrun: 2 gloo processes train the same steps as one process, each rank on
its slice of every global batch, and one process resumes the 2-process run's folder with
--try_load_latest_save. The runs are shared_runs.py's ("one", the FSDP writer "fsdp2", "latest_by2")."""

import json

import pytest
import torch
from safetensors.torch import load_file


def _record(runs, name: str, rank: int = 0) -> dict:
    return json.loads((runs / f"{name}.rank{rank}.json").read_text())


def test_two_processes_match_one(shared_runs):
    one, two = _record(shared_runs, "one")["losses"], _record(shared_runs, "fsdp2")["losses"]
    assert sorted(one) == sorted(two) == ["1", "2", "3", "4", "5", "6"]
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-5), step
    batches = _record(shared_runs, "one")["batches"]
    for rank in (0, 1):
        assert _record(shared_runs, "fsdp2", rank)["batches"] == [b[rank::2] for b in batches]
    resumed = _record(shared_runs, "latest_by2")["losses"]  # a 2-process folder resumed by one process
    assert sorted(resumed) == ["7"]
    saved = load_file(str(shared_runs / "runs" / "fsdp2" / "step6-unsharded" / "model.safetensors"))
    loaded = load_file(str(shared_runs / "latest_by2.init.safetensors"))
    assert sorted(loaded) == sorted(saved) and all(torch.equal(loaded[k], saved[k]) for k in saved)
