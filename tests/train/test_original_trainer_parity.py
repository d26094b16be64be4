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


def _train(work: Path, name: str, *flags: str, nproc: int = 1) -> str:
    """The user's command on one fixture run, in `work` (a writable copy of the fixture); its output."""
    launch = [sys.executable] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]  # fmt: skip
    shutil.rmtree(work / name / "run", ignore_errors=True)
    proc = subprocess.run(
        [*launch, str(ROOT / "experiments" / "original_config.py"), f"{name}/init-unsharded/config.yaml",
         "--tracking.no-aim", *flags],
        cwd=work, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr + proc.stdout


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    path = tmp_path_factory.mktemp("original_trainer") / "fixture"
    shutil.copytree(FIXTURE, path)
    return path


@pytest.fixture(scope="module")
def runs(work):
    """Both fixture runs, each trained once by the user's command on one process."""
    return {name: (work / name, _train(work, name)) for name in PARAM_TOLERANCE}


def _relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-30)


def assert_steps_match(folder: Path) -> None:
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


def assert_weights_match(folder: Path, name: str) -> None:
    config = read_original_config((folder / "init-unsharded" / "config.yaml").read_text())
    model_cfg = train_config_from_original(config)[0].model
    ours = to_olmo_state_dict(load_file(folder / "run" / "step12-unsharded" / "model.safetensors"), model_cfg)
    theirs = torch.load(folder / "final" / "model.pt", weights_only=True)
    theirs = {k.replace("_fsdp_wrapped_module.", ""): v for k, v in theirs.items()}
    assert sorted(ours) == sorted(theirs)
    diff = torch.cat([(ours[k] - theirs[k]).abs().flatten() for k in sorted(theirs)])
    assert diff.max().item() < PARAM_TOLERANCE[name], diff.max().item()
    assert diff.mean().item() < MEAN_TOLERANCE, diff.mean().item()


@pytest.mark.parametrize("name", sorted(PARAM_TOLERANCE))
def test_every_step_matches_the_original_trainer(runs, name):
    assert_steps_match(runs[name][0])


@pytest.mark.parametrize("name", sorted(PARAM_TOLERANCE))
def test_final_weights_and_data_order_match_the_original_trainer(runs, name):
    folder, _ = runs[name]
    assert_weights_match(folder, name)
    # the last epoch's order (the run crosses two epoch boundaries), as the original wrote it
    order = np.fromfile(folder / "run" / "train_data" / "global_indices.npy", dtype=np.uint32)
    assert np.array_equal(order, np.fromfile(folder / "global_indices.npy", dtype=np.uint32))


@pytest.mark.parametrize(
    ("name", "nproc", "flags"),
    [("olmo1", 4, []), ("olmo2", 4, ["--parallel.tp=2"])],
    ids=["olmo1-fsdp4", "olmo2-fsdp2xtp2"],
)
def test_the_original_trainers_run_reproduced_on_several_ranks(tmp_path, name, nproc, flags):
    """The original ran on one process; FSDP over 4 ranks (2 instances each per step), and FSDP 2 x tensor
    parallel 2 for olmo2 (olmo1 ties its embedding, which TP refuses), reproduce it as closely (measured max
    absolute: olmo1 4.7e-7, olmo2 4.0e-6)."""
    work = tmp_path / "fixture"
    shutil.copytree(FIXTURE, work)
    _train(work, name, *flags, nproc=nproc)
    assert_steps_match(work / name)
    assert_weights_match(work / name, name)


def test_the_run_says_what_it_reproduces_and_what_it_ignores(runs):
    _, olmo2_log = runs["olmo2"]
    assert "z-loss multiplier 0.0001 (the config says 1e-05" in olmo2_log
    _, olmo1_log = runs["olmo1"]
    assert "the clip warmup lags one step" in olmo1_log
    assert "no effect here: model.init_device" in olmo1_log
