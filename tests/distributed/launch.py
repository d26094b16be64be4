"""Shared by the multi-process tests: write a run config as YAML, and run parallel_driver.py on it under
torchrun (or as one plain process)."""

import subprocess
import sys
from pathlib import Path

import yaml

from olmo_fn.config_io import config_to_dict
from tests.train.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "tests" / "distributed" / "parallel_driver.py"


def case_yaml(tmp: Path, name: str, save_folder: Path, **fields) -> Path:
    """{tmp}/{name}.yaml: the tiny test run with `fields` changed (the corpus is made once in tmp)."""
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(tiny_config(tmp, save_folder=str(save_folder), **fields))))
    return path


def run_driver(tmp: Path, nproc: int, configs: list[Path], timeout: int = 600) -> None:
    """One launch of nproc processes running the cases in order; a hang fails at the timeout."""
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = [*launch, str(DRIVER)] if nproc > 1 else [sys.executable, str(DRIVER)]
    result = subprocess.run(
        [*cmd, str(tmp), *map(str, configs)], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
