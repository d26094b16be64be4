"""The same experiment under torchrun: 2 gloo processes train the same steps as one process, each rank on
its slice of every global batch, and resume each other's checkpoints."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from olmo_fn.config_io import config_to_dict
from tests.train.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "tests" / "train" / "driver.py"


def _run(cfg, losses: Path, nproc: int) -> dict[int, float]:
    config = losses.with_suffix(".yaml")
    config.write_text(yaml.safe_dump(config_to_dict(cfg)))
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = [*launch, str(DRIVER)] if nproc > 1 else [sys.executable, str(DRIVER)]
    result = subprocess.run(
        [*cmd, str(config), str(losses)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return {row["step"]: row["loss"] for row in map(json.loads, losses.read_text().splitlines())}


def test_two_processes_match_one(tmp_path):
    single = tiny_config(tmp_path / "one", max_duration="5", save_interval_unsharded=None, eval_interval=None)
    double = tiny_config(tmp_path / "two", max_duration="5", save_interval_unsharded=None, eval_interval=None)
    one = _run(single, tmp_path / "one.jsonl", 1)
    two = _run(double, tmp_path / "two.jsonl", 2)
    assert sorted(one) == sorted(two) == [1, 2, 3, 4, 5]
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-5), step
    resumed = tiny_config(tmp_path / "two", max_duration="7", try_load_latest_save=True, eval_interval=None)
    more = _run(resumed, tmp_path / "resumed.jsonl", 1)  # a 2-process checkpoint resumed by one process
    assert sorted(more) == [6, 7]
