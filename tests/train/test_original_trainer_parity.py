"""olmo_fn against the original OLMo trainer itself: `experiments/original_config.py` on the full config.yaml
of two runs the original trainer made (tests/fixtures/original_trainer, a copy of
../shared/fixtures/original_trainer: its init checkpoint, token files, per-step metrics and final weights) must
reproduce every step and the final weights."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from olmo_fn.checkpoint.olmo import to_olmo_state_dict
from olmo_fn.original import read_original_config, train_config_from_original

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "original_trainer"
# The original trainer run twice with a doubled micro-batch differs by ~2e-7 relative in loss and grad norm
# and by up to ~1e-5 in olmo2's final parameters (the fixture's README): that is the noise floor. Measured
# here (max / mean absolute): olmo1 5.7e-7 / 7e-9; olmo2 2.0e-5 / 4e-8, the max at one element of the
# embedding row of a rare token, 1 of 107,008 above 1e-5. Rounding alone moves it between 1.1e-5 and
# 3.4e-5 (up/gate fused into one matmul as the original does: 1.1e-5; an autograd loss instead of the
# chunked one: 3.4e-5), while leaving out one of the original's two behaviours gives 7e-3 to 8e-3.
PARAM_TOLERANCE = {"olmo1": 1e-5, "olmo2": 5e-5}
MEAN_TOLERANCE = 2e-7


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both fixture runs, each trained once by the user's command, in a writable copy of the fixture."""
    work = tmp_path_factory.mktemp("original_trainer") / "fixture"
    shutil.copytree(FIXTURE, work)
    out = {}
    for name in PARAM_TOLERANCE:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "experiments" / "original_config.py"), f"{name}/init-unsharded/config.yaml",
             "--tracking.no-aim"],
            cwd=work, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[name] = (work / name, proc.stderr + proc.stdout)
    return out


def _relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-30)


@pytest.mark.parametrize("name", sorted(PARAM_TOLERANCE))
def test_every_step_matches_the_original_trainer(runs, name):
    folder, _ = runs[name]
    reference = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    ours = [json.loads(line) for line in (folder / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in ours] == [r["step"] for r in reference] == list(range(1, 13))
    for ref, row in zip(reference, ours):
        assert _relative(row["train/CrossEntropyLoss"], ref["ce"]) < 1e-5, (row["step"], row, ref)
        assert row["train/Perplexity"] == pytest.approx(np.exp(row["train/CrossEntropyLoss"]), rel=1e-12)
        assert _relative(row["optim/total_grad_norm"], ref["grad_norm"]) < 1e-5, (row["step"], row, ref)
        for i, lr in enumerate(ref["lrs"]):
            assert _relative(row[f"optim/learning_rate_group{i}"], lr) < 1e-12
        assert row["throughput/total_tokens"] == ref["tokens_seen"]
        if ref["z"] is None:
            assert "train/ZLoss" not in row
        else:
            assert _relative(row["train/ZLoss"], ref["z"]) < 1e-5, (row["step"], row, ref)


@pytest.mark.parametrize("name", sorted(PARAM_TOLERANCE))
def test_final_weights_and_data_order_match_the_original_trainer(runs, name):
    folder, _ = runs[name]
    config = read_original_config((folder / "init-unsharded" / "config.yaml").read_text())
    model_cfg = train_config_from_original(config)[0].model
    ours = to_olmo_state_dict(load_file(folder / "run" / "step12-unsharded" / "model.safetensors"), model_cfg)
    theirs = torch.load(folder / "final" / "model.pt", weights_only=True)
    theirs = {k.replace("_fsdp_wrapped_module.", ""): v for k, v in theirs.items()}
    assert sorted(ours) == sorted(theirs)
    diff = torch.cat([(ours[k] - theirs[k]).abs().flatten() for k in sorted(theirs)])
    assert diff.max().item() < PARAM_TOLERANCE[name], diff.max().item()
    assert diff.mean().item() < MEAN_TOLERANCE, diff.mean().item()
    # the last epoch's order (the run crosses two epoch boundaries), as the original wrote it
    order = np.fromfile(folder / "run" / "train_data" / "global_indices.npy", dtype=np.uint32)
    assert np.array_equal(order, np.fromfile(folder / "global_indices.npy", dtype=np.uint32))


def test_the_run_says_what_it_reproduces_and_what_it_ignores(runs):
    _, olmo2_log = runs["olmo2"]
    assert "z-loss multiplier 0.0001 (the config says 1e-05" in olmo2_log
    _, olmo1_log = runs["olmo1"]
    assert "the clip warmup lags one step" in olmo1_log
    assert "no effect here: model.init_device" in olmo1_log
