"""Preemption under torchrun: a run to the end, the same run stopped by a signal, and its resumption.

    torchrun --standalone --nproc_per_node=N preempt_driver.py OUT_DIR CASE.yaml STEP

The stopped run gets SIGUSR1 on its last rank only, right after STEP, and SIGTERM once more as its
checkpoint save begins; the resumed run is the same config with try_load_latest_save. Rank 0 writes
OUT_DIR/{full,resumed}.safetensors (the final full parameters); every rank writes OUT_DIR/stop.rank{R}.json
(where it stopped, on which signal, the checkpoint, the first step after resuming).
"""

import dataclasses
import json
import os
import signal
import sys
from pathlib import Path

import yaml
from safetensors.torch import save_file
from torch.distributed.tensor import DTensor

from olmo_fn.config import TrainConfig
from olmo_fn.config_io import config_from_dict
from olmo_fn.dist import shutdown_distributed
from olmo_fn.run_context import Hooks
from olmo_fn.train import train


def full_parameters(model) -> dict:
    return {
        n: (p.full_tensor() if isinstance(p, DTensor) else p.detach()).contiguous()
        for n, p in model.named_parameters()
    }


def main() -> None:
    out, case, stop_step = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    cfg = config_from_dict(TrainConfig, yaml.safe_load(case.read_text()))
    full = train(dataclasses.replace(cfg, save_folder=cfg.save_folder + "-full"))
    sent = []

    def after_step(run, batch, metrics):
        if run.state.step == stop_step and run.env.rank == run.env.world_size - 1:
            os.kill(os.getpid(), signal.SIGUSR1)
            sent.append("SIGUSR1")

    def before_save(run, sharded):
        if sent == ["SIGUSR1"]:  # a second signal while the stop's checkpoint is being written
            os.kill(os.getpid(), signal.SIGTERM)
            sent.append("SIGTERM")

    stopped = train(cfg, Hooks(after_step=[after_step], before_save=[before_save]))
    first_step = []
    resumed = train(
        dataclasses.replace(cfg, try_load_latest_save=True),
        Hooks(after_step=[lambda run, b, m: first_step.append(run.state.step)]),
    )
    finals = {name: full_parameters(result.model) for name, result in (("full", full), ("resumed", resumed))}
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        for name, tensors in finals.items():
            save_file(tensors, str(out / f"{name}.safetensors"))
    record = {
        "stopped_at": stopped.state.step, "stopped_by": stopped.stopped_by, "checkpoint": stopped.checkpoint,
        "signals_sent": sent, "resumed_from": first_step[0] - 1, "final_step": resumed.state.step,
        "full_stopped_by": full.stopped_by,
    }  # fmt: skip
    (out / f"stop.rank{rank}.json").write_text(json.dumps(record))
    shutdown_distributed()


if __name__ == "__main__":
    main()
