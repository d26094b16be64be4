"""Training throughput on one device as on one rank of many: FSDP2 (one rank), compile, bf16
autocast, optionally float8 and activation checkpointing; tokens/s and MFU against the device's bf16 peak.

`train_row` is one row of the GPU check (gpu_check.py); `run_gpu_train_bench` is `tools/bench.py train
--device cuda`, one preset at its published shape.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from olmo_fn.config import ModelConfig, OptimizerConfig, ParallelConfig
from olmo_fn.errors import ConfigError
from olmo_fn.metrics import device_peak_flops, peak_memory_bytes
from olmo_fn.model import PRESETS, Transformer, flops_per_token
from olmo_fn.model.init import init_tensor
from olmo_fn.optim import build_optimizer
from olmo_fn.parallel import apply_fsdp, build_mesh, fsdp_dtypes, parallelize
from olmo_fn.train_step import train_step

NO_CUDA = "--device cuda: no CUDA device is visible here; run the GPU check on a GPU machine"


def require_cuda() -> torch.device:
    """cuda:0, made current; ConfigError (one line) where no CUDA device is visible."""
    if not torch.cuda.is_available():
        raise ConfigError(NO_CUDA)
    torch.cuda.set_device(0)
    return torch.device("cuda", 0)


def single_rank_group(device: torch.device) -> None:
    """A one-process group (NCCL on GPUs, gloo on the CPU), so that FSDP2 runs as on one rank of many."""
    if dist.is_initialized():
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0"
    )
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def initial_state(cfg: ModelConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """olmo_fn's full fp32 initial weights on the CPU, drawn once per shape: drawing a 1B model takes
    seconds, so the check's rows copy them instead of drawing again. Each parameter has its own generator,
    so they are drawn in parallel threads."""
    with torch.device("meta"):
        shapes = {name: tuple(p.shape) for name, p in Transformer(cfg).named_parameters()}
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        tensors = pool.map(lambda item: init_tensor(cfg, *item, seed), shapes.items())
        return dict(zip(shapes, tensors))


@torch.no_grad()
def load_full_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy full tensors into the parameters (plain or one-rank FSDP2 shards, which hold the whole tensor)."""
    for name, param in model.named_parameters():
        local = param.to_local() if isinstance(param, DTensor) else param
        local.copy_(state[name])


def build_fsdp_model(cfg: ModelConfig, parallel: ParallelConfig, device: torch.device, compile: bool,
                     precision: str, state: dict[str, torch.Tensor]) -> torch.nn.Module:  # fmt: skip
    """float8 / AC / compile by `parallelize`, then FSDP2 over the one-rank dp_shard mesh (which
    `parallelize` leaves unsharded: there is nothing to shard over), then the weights of `state`."""
    mesh = build_mesh(parallel, 1, device.type)
    with torch.device("meta"):
        net = Transformer(cfg)
    parallelize(net, parallel, mesh, compile=compile, device_type=device.type, precision=precision)
    param_dtype, reduce_dtype = fsdp_dtypes(parallel, device.type, precision)
    apply_fsdp(net, mesh["dp_shard"], param_dtype, reduce_dtype, parallel.reshard_after_forward)
    net.to_empty(device=device)
    load_full_state(net, state)
    return net


def train_row(cfg: ModelConfig, parallel: ParallelConfig, device: torch.device, micro_batch: int,
              seq_len: int, warmup: int, steps: int, compile: bool,
              state: dict[str, torch.Tensor]) -> dict:  # fmt: skip
    """Median tokens/s over `steps` train steps (after `warmup`), MFU, peak memory and the first loss.

    bf16 autocast on GPUs, fp32 on the CPU; the batch is random tokens, AdamW at a small learning rate.
    """
    autocast = torch.bfloat16 if device.type == "cuda" else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    net = build_fsdp_model(cfg, parallel, device, compile, "amp_bf16" if autocast else "fp32", state)
    opt = build_optimizer(net, OptimizerConfig(learning_rate=1e-4, eps=1e-8))
    ids = torch.randint(0, cfg.vocab_size, (micro_batch, seq_len), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids}

    def step() -> float:
        out = train_step(net, opt, batch, lr=1e-4, microbatch_size=micro_batch, max_grad_norm=1.0,
                         autocast_dtype=autocast)  # fmt: skip
        return out.ce_loss

    losses = [step() for _ in range(warmup)]
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        losses.append(step())  # the loss is read back: the step has finished
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    tps = micro_batch * seq_len / seconds
    peak, source = device_peak_flops(device, torch.bfloat16)
    mfu = tps * flops_per_token(cfg, seq_len) / peak if peak else None
    return {"tokens_per_second": tps, "mfu": mfu, "peak_source": source, "step_seconds": seconds,
            "peak_memory_gib": peak_memory_bytes(device) / 2**30, "first_loss": losses[0]}  # fmt: skip


def run_gpu_train_bench(model: str, micro_batch: int, seq_len: int, steps: int, compile: bool) -> dict:
    """Time `steps` train steps of preset `model` on cuda:0 (after 3 warm-up steps); tokens/s and MFU."""
    device = require_cuda()
    cfg = PRESETS[model]()
    single_rank_group(device)
    try:
        row = train_row(cfg, ParallelConfig(dp_shard=1), device, micro_batch, seq_len, 3, steps, compile,
                        initial_state(cfg))  # fmt: skip
    finally:
        dist.destroy_process_group()
    mfu = row["mfu"]
    print(
        f"{model} on {torch.cuda.get_device_name(device)}: bf16 autocast, FSDP2 (1 rank), compile={compile}"
    )
    print(f"batch {micro_batch} x {seq_len}, {steps} timed steps: {row['tokens_per_second']:,.0f} tokens/s, MFU "
          f"{'n/a' if mfu is None else f'{mfu:.1%}'} ({row['peak_source']}), peak memory "
          f"{row['peak_memory_gib']:.1f} GiB, first loss {row['first_loss']:.3f}")  # fmt: skip
    figures = {
        "bench": "gpu-train",
        "model": model,
        "tokens_per_second": row["tokens_per_second"],
        "mfu": mfu,
    }
    print(json.dumps(figures))
    return figures
