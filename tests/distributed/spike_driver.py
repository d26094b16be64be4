"""One training under torchrun with a spike injected on one rank only, recording what each rank decided.

    torchrun --standalone --nproc_per_node=2 spike_driver.py CONFIG.yaml OUT_DIR SPIKE_RANK STEP=FACTOR ...

On SPIKE_RANK, the final norm's output is multiplied by FACTOR in the forward passes of each given STEP (inf:
a non-finite loss), so only that rank's share of the global batch spikes. Every rank writes
OUT_DIR/rank{R}.json: per step, whether it skipped the step and a hash of its own parameter shards.
"""

import hashlib
import json
import sys
from pathlib import Path

import torch
import yaml
from torch.distributed.tensor import DTensor

from olmo_fn.config import TrainConfig
from olmo_fn.config_io import config_from_dict
from olmo_fn.dist import shutdown_distributed
from olmo_fn.run_context import Hooks
from olmo_fn.train import train


def main() -> None:
    config_path, out, spike_rank, *spikes = sys.argv[1:]
    factors = {int(s): float(f) for s, f in (spec.split("=") for spec in spikes)}
    cfg = config_from_dict(TrainConfig, yaml.safe_load(open(config_path)))
    record: dict[int, dict] = {}

    def build(run):
        def hook(module, args, output):
            factor = factors.get(run.state.step + 1)
            return output * factor if factor is not None and torch.is_grad_enabled() else None

        if run.env.rank == int(spike_rank):
            run.model.lm_head.norm.register_forward_hook(hook)

    def after_step(run, batch, metrics):
        digest = hashlib.sha256()
        for p in run.model.parameters():
            local = p.to_local() if isinstance(p, DTensor) else p
            digest.update(local.detach().contiguous().numpy().tobytes())
        record[run.state.step] = {"skipped": metrics.skipped is not None, "params": digest.hexdigest()}

    train(cfg, Hooks(after_build=[build], after_step=[after_step]))
    rank = torch.distributed.get_rank()
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(record))
    shutdown_distributed()


if __name__ == "__main__":
    main()
