"""Runs one training from a config YAML in its own process, for tests that kill and resume it.

    python driver.py CONFIG.yaml LOSSES.jsonl [--kill-after-step K | --kill-during-save K]
    torchrun --standalone --nproc_per_node=2 driver.py CONFIG.yaml LOSSES.jsonl

Losses of every step (rank 0) are appended to LOSSES.jsonl (through the run's before_log hook). A kill is a
real SIGKILL of this process: after step K has been logged, or in the middle of writing step K's checkpoint
(after its first whole-file write: a fault injected into storage, not an observation).
"""

import json
import os
import signal
import sys

import yaml

from olmo_fn.checkpoint import storage
from olmo_fn.config import TrainConfig
from olmo_fn.config_io import config_from_dict
from olmo_fn.dist import shutdown_distributed
from olmo_fn.run_context import Hooks
from olmo_fn.train import train


def main() -> None:
    config_path, losses_path, *rest = sys.argv[1:]
    mode, kill_step = (rest[0], int(rest[1])) if rest else (None, -1)
    cfg = config_from_dict(TrainConfig, yaml.safe_load(open(config_path)))
    current = {"step": 0}

    def log(run, step, metrics, context):
        if context.get("subset") == "train" and run.env.rank == 0:
            with open(losses_path, "a") as f:
                f.write(json.dumps({"step": step, "loss": metrics["train/CrossEntropyLoss"]}) + "\n")
            current["step"] = step
            if mode == "--kill-after-step" and step == kill_step:
                os.kill(os.getpid(), signal.SIGKILL)

    original_write = storage.write_bytes

    def write_bytes(url, data):
        original_write(url, data)
        if mode == "--kill-during-save" and current["step"] == kill_step:
            os.kill(os.getpid(), signal.SIGKILL)

    storage.write_bytes = write_bytes
    train(cfg, Hooks(before_log=[log]))
    shutdown_distributed()


if __name__ == "__main__":
    main()
