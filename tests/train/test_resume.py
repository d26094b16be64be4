"""Exact resume: N steps straight equal k steps, a SIGKILL, then --try_load_latest_save to N, for several k
(including a kill in the middle of writing a checkpoint): the same loss at every step and bitwise-identical
final parameters."""

import dataclasses
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from olmo_fn.checkpoint import find_latest, load_checkpoint
from olmo_fn.config_io import config_to_dict
from olmo_fn.model import Transformer

DRIVER = Path(__file__).with_name("driver.py")


def _drive(cfg, losses: Path, *kill) -> int:
    config = losses.with_suffix(".yaml")
    config.write_text(yaml.safe_dump(config_to_dict(cfg)))
    proc = subprocess.run([sys.executable, str(DRIVER), str(config), str(losses), *map(str, kill)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr[-3000:]
    return proc.returncode


def _losses(path: Path) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        out.setdefault(row["step"], []).append(row["loss"])
    return out


def _final_params(cfg) -> dict[str, torch.Tensor]:
    model = Transformer(cfg.model)
    latest = find_latest(cfg.save_folder)
    assert latest.endswith("step10-unsharded"), latest
    load_checkpoint(latest, model, None)
    return model.state_dict()


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    from tests.train.conftest import tiny_config

    tmp = tmp_path_factory.mktemp("straight")
    cfg = tiny_config(tmp, max_duration="10", save_interval_unsharded=3, eval_interval=None)
    assert _drive(cfg, tmp / "losses.jsonl") == 0
    return tmp, cfg, _losses(tmp / "losses.jsonl"), _final_params(cfg)


@pytest.mark.parametrize(
    "kill", [("--kill-after-step", 2), ("--kill-after-step", 7), ("--kill-during-save", 6)]
)
def test_kill_then_resume_equals_the_straight_run(straight, tmp_path, kill):
    tmp, cfg, expected_losses, expected_params = straight
    run = dataclasses.replace(cfg, save_folder=str(tmp_path / "run"), try_load_latest_save=True)
    losses = tmp_path / "losses.jsonl"
    assert _drive(run, losses, *kill) == -signal.SIGKILL
    if kill[0] == "--kill-during-save":  # the save of step 6 was cut: only step 3 is complete
        assert find_latest(run.save_folder).endswith("step3-unsharded")
        assert any(p.name.startswith("step6-unsharded") for p in Path(run.save_folder).iterdir())
    assert _drive(run, losses) == 0
    got = _losses(losses)
    assert sorted(got) == list(range(1, 11))
    for step, values in got.items():  # steps after the last checkpoint ran twice: both times the same
        assert all(v == expected_losses[step][0] for v in values), (step, values, expected_losses[step])
    params = _final_params(run)
    for name, tensor in expected_params.items():
        assert torch.equal(params[name], tensor), name
