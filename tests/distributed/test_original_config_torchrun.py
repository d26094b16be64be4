"""The original's command line with an official YAML, under torchrun on 2 processes: the official OLMo-2 7B
stage-1 config, shrunk only in width, depth and length by flags, trains 4 steps (one plain process: its
launch is the cheaper one), then a second run on 2 processes resumes from its checkpoint with the seed's own
flags (--load_path, --save_folder, --run_name, --save_overwrite) and trains 2 more steps."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
YAML = ROOT / "tests" / "fixtures" / "official_configs" / "OLMo2-7B-stage1.yaml"
SHRINK = [
    "--model.d_model=64", "--model.n_heads=4", "--model.n_layers=2", "--model.mlp_hidden_size=256",
    "--model.max_sequence_length=64", "--global_train_batch_size=6", "--device_train_microbatch_size=1",
    "--evaluators=[]", "--data.num_workers=0", "--precision=fp32", "--tracking.no-aim", "--tracking.progress-bar=False",
]  # fmt: skip


def _run(tmp: Path, nproc: int, *args: str) -> subprocess.CompletedProcess:
    launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else []
    cmd = [sys.executable, *launch, str(ROOT / "experiments" / "original_config.py"), str(YAML), *args]
    return subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=600)


def test_official_olmo2_yaml_trains_and_resumes_on_two_ranks(tmp_path):
    rng = np.random.default_rng(0)
    for i, instances in enumerate((13, 8)):  # 21 instances: 3 steps of 6 per epoch, uneven over 2 ranks
        rng.integers(0, 100_278, size=instances * 64 + 17, dtype=np.uint32).tofile(tmp_path / f"part-{i}.npy")
    data = "--data.paths=[part-0.npy,part-1.npy]"
    first = _run(
        tmp_path, 1, *SHRINK, data, "--run_name=stage1", "--save_folder=runs/stage1", "--max_duration=4"
    )
    assert first.returncode == 0, first.stderr[-4000:]
    assert (tmp_path / "runs/stage1/step4-unsharded/model.safetensors").exists()
    second = _run(
        tmp_path, 2, *SHRINK, data, "--load_path=runs/stage1/step4-unsharded", "--save_folder=runs/stage2",
        "--run_name=stage2", "--save_overwrite", "--max_duration=6",
    )  # fmt: skip
    assert second.returncode == 0, second.stderr[-4000:]
    assert (second.stdout + second.stderr).count(
        "z-loss multiplier 0.0001 (the config says 1e-05"
    ) == 1  # rank 0
    rows = [json.loads(line) for line in (tmp_path / "runs/stage2/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 6]  # resumed at step 4 with its trainer and optimizer state
    first_rows = [
        json.loads(line) for line in (tmp_path / "runs/stage1/metrics.jsonl").read_text().splitlines()
    ]
    lrs = [r["optim/learning_rate_group0"] for r in first_rows + rows]
    assert lrs == sorted(lrs) and lrs[4] == pytest.approx(5 * lrs[0], rel=1e-12)  # warmup goes on from step 4
    assert rows[0]["throughput/total_tokens"] == 5 * 6 * 64
