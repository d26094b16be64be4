"""Runs several trainings one after the other in one (torchrun) launch, recording what the tests compare.

    torchrun --standalone --nproc_per_node=N parallel_driver.py OUT_DIR CASE.yaml [CASE.yaml ...]

For each case (named by the YAML's stem), every rank writes OUT_DIR/{case}.rank{R}.json: its mesh position
(dp rank, dp size), the input_ids of every batch it trained on, the losses (rank 0) and each step's wall time;
the downstream metrics when it has downstream evaluators; rank 0 writes OUT_DIR/{case}.init.safetensors, the full parameters right after initialisation (or loading).
Everything is observed through the run's hooks.

A case with a {case}.spikes.json beside its YAML, {"rank": R, "factors": {STEP: FACTOR}}, gets spikes on one
rank: on rank R the final norm's output is multiplied by FACTOR in the forward passes of each STEP (Infinity:
a non-finite loss), so only that rank's share of the global batch spikes; every rank then records, per step,
whether it skipped the step and a hash of its own parameter shards ("spikes").
"""

import hashlib
import json
import sys
import time
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file
from torch.distributed.tensor import DTensor

from olmo_fn.config import TrainConfig
from olmo_fn.config_io import config_from_dict
from olmo_fn.dist import shutdown_distributed
from olmo_fn.run_context import Hooks
from olmo_fn.train import train


def run_case(config_path: Path, out: Path) -> None:
    cfg = config_from_dict(TrainConfig, yaml.safe_load(config_path.read_text()))
    record = {"batches": [], "losses": {}, "evals": {}, "step_times": []}
    clock = {}
    spikes_file = config_path.with_suffix(".spikes.json")
    spikes = json.loads(spikes_file.read_text()) if spikes_file.exists() else None

    def after_build(run):
        env = run.env
        record.update(rank=env.rank, dp_rank=env.dp_rank, dp_size=env.dp_size, world_size=env.world_size)
        full = {
            n: p.full_tensor() if isinstance(p, DTensor) else p.detach()
            for n, p in run.model.named_parameters()
        }
        if env.rank == 0:
            save_file(
                {n: t.contiguous() for n, t in full.items()},
                str(out / f"{config_path.stem}.init.safetensors"),
            )
        if spikes is not None and env.rank == spikes["rank"]:
            run.model.lm_head.norm.register_forward_hook(
                lambda module, args, output: _spiked(output, spikes["factors"].get(str(run.state.step + 1)))
            )
        clock["last"] = time.perf_counter()

    def after_step(run, batch, metrics):
        if spikes is not None:
            digest = hashlib.sha256()
            for p in run.model.parameters():
                local = p.to_local() if isinstance(p, DTensor) else p
                digest.update(local.detach().contiguous().numpy().tobytes())
            skipped = metrics.skipped is not None
            record.setdefault("spikes", {})[run.state.step] = {
                "skipped": skipped,
                "params": digest.hexdigest(),
            }
        record["batches"].append(batch["input_ids"].tolist())
        now = time.perf_counter()
        record["step_times"].append(now - clock["last"])
        clock["last"] = now

    def before_log(run, step, metrics, context):
        if context.get("subset") == "train":
            record["losses"][step] = metrics["train/CrossEntropyLoss"]
        elif f"eval/{context['dataset']}/CrossEntropyLoss" in metrics:
            label = context["dataset"]
            record["evals"][f"{step}/{label}"] = metrics[f"eval/{label}/CrossEntropyLoss"]
        else:  # downstream tasks: eval/downstream/{label}_{metric} (or downstream_{metric}/...)
            record.setdefault("downstream", {}).update({f"{step}/{k}": v for k, v in metrics.items()})

    train(cfg, Hooks(after_build=[after_build], after_step=[after_step], before_log=[before_log]))
    (out / f"{config_path.stem}.rank{record['rank']}.json").write_text(json.dumps(record))


def _spiked(output, factor):
    return output * factor if factor is not None and torch.is_grad_enabled() else None


def main() -> None:
    out, *configs = sys.argv[1:]
    for config in configs:
        run_case(Path(config), Path(out))
    shutdown_distributed()


if __name__ == "__main__":
    main()
