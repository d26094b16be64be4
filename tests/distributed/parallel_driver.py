"""Runs several trainings one after the other in one (torchrun) launch, recording what the tests compare.

    torchrun --standalone --nproc_per_node=N parallel_driver.py OUT_DIR CASE.yaml [CASE.yaml ...]

For each case (named by the YAML's stem), every rank writes OUT_DIR/{case}.rank{R}.json: its mesh position
(dp rank, dp size), the input_ids of every batch it trained on, the losses (rank 0) and each step's wall time;
rank 0 writes OUT_DIR/{case}.init.safetensors, the full parameters right after initialisation.
"""

import json
import sys
import time
from pathlib import Path

import yaml
from safetensors.torch import save_file
from torch.distributed.tensor import DTensor

from olmo_fn import tracking
from olmo_fn import train as train_module
from olmo_fn.config import TrainConfig
from olmo_fn.config_io import config_from_dict
from olmo_fn.dist import shutdown_distributed


def run_case(config_path: Path, out: Path) -> None:
    cfg = config_from_dict(TrainConfig, yaml.safe_load(config_path.read_text()))
    record = {"batches": [], "losses": {}, "step_times": []}
    env_box = {}
    original = {
        "init": train_module.init_distributed,
        "build": train_module.build_model,
        "step": train_module.train_step,
        "log": tracking.Tracker.log,
    }

    def init_distributed(parallel):
        env = original["init"](parallel)
        env_box["env"] = env
        record.update(rank=env.rank, dp_rank=env.dp_rank, dp_size=env.dp_size, world_size=env.world_size)
        return env

    def build_model(*args, **kwargs):
        model = original["build"](*args, **kwargs)
        full = {
            n: p.full_tensor() if isinstance(p, DTensor) else p.detach() for n, p in model.named_parameters()
        }
        if env_box["env"].rank == 0:
            save_file(
                {n: t.contiguous() for n, t in full.items()},
                str(out / f"{config_path.stem}.init.safetensors"),
            )
        return model

    def train_step(model, optimizer, batch, **kwargs):
        record["batches"].append(batch["input_ids"].tolist())
        start = time.perf_counter()
        metrics = original["step"](model, optimizer, batch, **kwargs)
        record["step_times"].append(time.perf_counter() - start)
        return metrics

    def log(self, step, metrics, context, console=True):
        original["log"](self, step, metrics, context, console)
        if context.get("subset") == "train":
            record["losses"][step] = metrics["loss"]

    train_module.init_distributed, train_module.build_model = init_distributed, build_model
    train_module.train_step, tracking.Tracker.log = train_step, log
    try:
        train_module.train(cfg)
    finally:
        train_module.init_distributed, train_module.build_model = original["init"], original["build"]
        train_module.train_step, tracking.Tracker.log = original["step"], original["log"]
    (out / f"{config_path.stem}.rank{record['rank']}.json").write_text(json.dumps(record))


def main() -> None:
    out, *configs = sys.argv[1:]
    for config in configs:
        run_case(Path(config), Path(out))
    shutdown_distributed()


if __name__ == "__main__":
    main()
