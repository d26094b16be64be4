"""The process environment: one code path for a single process and for torchrun (RANK, LOCAL_RANK,
WORLD_SIZE, MASTER_ADDR, MASTER_PORT), on CPU (gloo) or GPU (NCCL), with the device mesh of the run."""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh

from olmo_fn.config import ParallelConfig
from olmo_fn.errors import ConfigError

# Variables a scheduler or MPI launcher sets for each of several tasks it starts (name, what started it).
_SCHEDULER_TASKS = (
    ("SLURM_NTASKS", "SLURM (srun)"),
    ("OMPI_COMM_WORLD_SIZE", "Open MPI (mpirun)"),
    ("PMI_SIZE", "an MPI/PMI launcher"),
    ("PMIX_SIZE", "a PMIx launcher"),
)


@dataclass
class DistEnv:
    """Where this process stands: its rank, its device, the mesh, and its data-parallel group.

    Data is split over the data-parallel ranks only: the ranks of one tensor-parallel group share a batch.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    dp_group: dist.ProcessGroup | None = None
    mesh: DeviceMesh | None = None
    dp_rank: int = 0
    dp_size: int = 1

    @property
    def tp_size(self) -> int:
        """Ranks of this process's tensor-parallel group (1 without TP)."""
        if self.mesh is None or "tp" not in (self.mesh.mesh_dim_names or ()):
            return 1
        return self.mesh["tp"].size()


def check_launcher_env(environ: dict[str, str] | None = None) -> None:
    """Raise ConfigError when a scheduler started several tasks without torchrun's RANK/WORLD_SIZE."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" in env and "RANK" in env:
        return
    for name, who in _SCHEDULER_TASKS:
        value = env.get(name, "1")
        if value.isdigit() and int(value) > 1:
            raise ConfigError(
                f"{who} started {value} tasks ({name}={value}) but RANK/WORLD_SIZE are not set, so each "
                "would train alone; start one task per node that runs `torchrun --nnodes=N "
                "--nproc_per_node=GPUS --rdzv_endpoint=HOST:PORT ...` (see launchers/slurm.py)"
            )


def init_distributed(parallel: ParallelConfig | None = None) -> DistEnv:
    """Read torchrun's environment, start the process group when there are several processes, pick the
    device, and build the device mesh of `parallel` (none for a single process)."""
    check_launcher_env()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    env = DistEnv(rank, world_size, local_rank, device)
    if parallel is None or world_size == 1:
        if parallel is not None:
            from olmo_fn.parallel import resolve_degrees

            resolve_degrees(parallel, 1)  # a single process with tp=2 etc. is a config error too
        return env
    from olmo_fn.parallel import build_mesh, dp_mesh_of

    env.mesh = build_mesh(parallel, world_size, device.type)
    dp_mesh = dp_mesh_of(env.mesh, device.type)
    env.dp_group, env.dp_rank, env.dp_size = dp_mesh.get_group(), dp_mesh.get_local_rank(), dp_mesh.size()
    return env


def shutdown_distributed() -> None:
    """End the process group cleanly: every rank reaches the barrier before any rank tears gloo/NCCL down
    (a rank that exits while a peer still talks to it can abort the peer). Unreachable models and DTensors
    are collected first: they hold the groups, and a group freed during interpreter exit can abort there."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
        gc.collect()
