"""Render (and optionally submit) a SLURM job that trains an experiment file with multi-node torchrun.

    python launchers/slurm.py --experiment experiments/olmo_1b.py --nodes 4 --gpus-per-node 8 \
        --extra-flags --parallel.dp_shard=-1 > job.sbatch

One task per node runs torchrun; the first node of the allocation is the rendezvous host (MASTER_ADDR),
SLURM_NODEID is the node rank.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass, field

import tyro


@dataclass
class SlurmJob:
    """What to run and on how much."""

    experiment: str
    """Experiment file to train, e.g. experiments/olmo_1b.py."""
    nodes: int = 1
    """Number of nodes."""
    gpus_per_node: int = 8
    """GPUs (torchrun processes) per node."""
    extra_flags: list[str] = field(default_factory=list)
    """Flags passed on to the experiment, e.g. --parallel.tp=2."""
    job_name: str = "olmo_fn"
    partition: str | None = None
    """SLURM partition; None = the cluster default."""
    time: str = "48:00:00"
    master_port: int = 29500
    python: str = "python"
    submit: bool = False
    """Pass the script to sbatch instead of printing it."""


def render(job: SlurmJob) -> str:
    """The sbatch script of `job`."""
    partition = f"#SBATCH --partition={job.partition}\n" if job.partition else ""
    flags = " ".join(shlex.quote(f) for f in job.extra_flags)
    return f"""#!/bin/bash
#SBATCH --job-name={job.job_name}
#SBATCH --nodes={job.nodes}
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node={job.gpus_per_node}
#SBATCH --time={job.time}
{partition}set -euo pipefail
export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MASTER_PORT={job.master_port}
srun --ntasks-per-node=1 bash -c '{job.python} -m torch.distributed.run \\
  --nnodes={job.nodes} --nproc_per_node={job.gpus_per_node} --node_rank=$SLURM_NODEID \\
  --rdzv_backend=c10d --rdzv_endpoint=$MASTER_ADDR:$MASTER_PORT --rdzv_id=$SLURM_JOB_ID \\
  {shlex.quote(job.experiment)} {flags}'
"""


def main(job: SlurmJob) -> str:
    """Print the sbatch script, or submit it with --submit."""
    script = render(job)
    if job.submit:
        subprocess.run(["sbatch"], input=script, text=True, check=True)
    else:
        print(script)
    return script


if __name__ == "__main__":
    main(tyro.cli(SlurmJob))
