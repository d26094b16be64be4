"""The GPU check is ready to run, and refuses clearly where there is no GPU."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_train_check_refuses_without_cuda():
    out = subprocess.run([sys.executable, "tools/bench.py", "train", "--device", "cuda"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode != 0
    assert out.stderr.strip().splitlines()[-1] == (
        "error: --device cuda: no CUDA device is visible here; run the GPU check on a GPU machine"
    )
