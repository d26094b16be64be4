"""Every checkpoint kind loads on any number of ranks and any layout, and training continues exactly.

Two runs write step-5 checkpoints (sharded and unsharded): one process, and FSDP on 2 processes. From the
1-process run the test makes an original OLMo folder (model.pt, optim.pt with integer ids, train.pt) and a
Hugging Face folder. Each of the six is then loaded by one process, by FSDP and by TP on 2, and by FSDP x TP
and HSDP on 4, for one more step: the step-6 loss equals the uninterrupted run's (the HF folder, which has no
optimizer or trainer state, gives the step-1 loss of a run that loads the same weights with both states
reset). The runs are shared_runs.py's (one launch of 2 processes and one of 4 for several test files).
"""

import json
from pathlib import Path

import pytest
import torch

from tests.distributed.shared_runs import KINDS, LOAD_LAYOUTS

LAYOUTS = LOAD_LAYOUTS


def _losses(tmp: Path, name: str) -> dict[str, float]:
    return json.loads((tmp / f"{name}.rank0.json").read_text())["losses"]


@pytest.fixture(scope="module")
def runs(shared_runs) -> Path:
    return shared_runs


@pytest.mark.parametrize("layout", [name for layouts in LAYOUTS.values() for name in layouts])
@pytest.mark.parametrize("kind", KINDS)
def test_next_step_loss_is_the_uninterrupted_runs(runs, kind, layout):
    got = _losses(runs, f"{kind}-{layout}")
    if kind == "hf_by1":
        assert list(got) == ["1"]
        assert got["1"] == pytest.approx(_losses(runs, "reset-reference")["1"], rel=1e-5)
        return
    uninterrupted = _losses(runs, "one")
    assert list(got) == ["6"]  # it resumed at step 5
    assert got["6"] == pytest.approx(uninterrupted["6"], rel=1e-5)


def test_the_two_writers_agree(runs):
    one, two = _losses(runs, "one"), _losses(runs, "fsdp2")
    assert sorted(one) == sorted(two) == ["1", "2", "3", "4", "5", "6"]
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-5)
    assert one["6"] < one["1"]


def test_loaded_weights_are_the_saved_ones(runs):
    """The initial parameters every layout reports after loading are the step-5 weights, bit for bit."""
    from safetensors.torch import load_file

    saved = load_file(str(runs / "runs" / "one" / "step5-unsharded" / "model.safetensors"))
    for layouts in LAYOUTS.values():
        for layout in layouts:
            got = load_file(str(runs / f"unsharded_by1-{layout}.init.safetensors"))
            assert sorted(got) == sorted(saved)
            assert all(torch.equal(got[k], saved[k]) for k in saved), layout
