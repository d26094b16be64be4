"""Sharded checkpoints across world sizes (gloo, CPU), and a writer killed with SIGKILL in the middle of saves."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from olmo_fn.checkpoint import find_latest, load_checkpoint, model_config_of_checkpoint
from olmo_fn.checkpoint.storage import read_pointer
from olmo_fn.model import Transformer
from tests.checkpoint.helpers import assert_same_model, assert_same_optim, tiny_cfg

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).parent / "ckpt_worker.py"


def _torchrun(n, *args):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={n}",
        str(WORKER),
        *args,
    ]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_saved_by_2_loaded_by_1_and_4(tmp_path):
    folder = str(tmp_path)
    _torchrun(2, "save", folder)
    shards = os.listdir(tmp_path / "step2" / "model_and_optim")
    assert ".metadata" in shards and {s.split("_")[2] for s in shards if s.endswith(".distcp")} == {"0", "1"}
    assert sorted(os.listdir(tmp_path / "step2" / "train")) == [
        f"rank{r}.{e}" for r in (0, 1) for e in ("json", "safetensors")
    ]
    cfg = tiny_cfg()
    one = [Transformer(cfg) for _ in range(2)]
    opts = [torch.optim.AdamW(m.parameters()) for m in one]
    loaded = load_checkpoint(str(tmp_path / "step2"), one[0], opts[0])
    load_checkpoint(str(tmp_path / "step2-unsharded"), one[1], opts[1])
    assert_same_model(one[0], one[1])
    assert_same_optim(one[0], opts[0], one[1], opts[1])
    assert loaded.trainer_state["world_size"] == 2 and loaded.trainer_state["data_loader"] == {"rank": 0}
    assert "LOADED OK world=4" in _torchrun(4, "load", folder)


def _check_folder(folder: Path):
    latest = find_latest(str(folder))
    assert latest is not None
    for pointer in ("latest", "latest-unsharded"):
        target = read_pointer(str(folder), pointer)
        if target is not None:
            assert (folder / target / "manifest.json").exists(), f"{pointer} -> {target} is incomplete"
    cfg = model_config_of_checkpoint(latest)
    model = Transformer(cfg)
    load_checkpoint(latest, model, torch.optim.AdamW(model.parameters()))
    return latest


def test_sigkill_mid_save_leaves_a_loadable_latest(tmp_path):
    rng = random.Random(0)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    seen = set()
    for round_ in range(3):
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), "writer", str(tmp_path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        saves = 0
        while saves < 2:  # let it finish a couple of saves, then kill it somewhere inside the next ones
            line = proc.stdout.readline()
            assert line, "writer died"
            saves += line.startswith("saved")
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        seen.add(_check_folder(tmp_path))
        leftovers = [p.name for p in tmp_path.iterdir() if "tmp" in p.name]
        print(f"round {round_}: latest {sorted(seen)}, unfinished {leftovers}")
    assert len(seen) >= 1
