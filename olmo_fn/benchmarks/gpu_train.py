"""The GPU check of the Distributed issue: OLMo-1B's shape on one CUDA device, bf16 autocast, FSDP2 (one
rank) and per-block compile, a few dozen steps; prints tokens/s and MFU against the device's bf16 peak."""

from __future__ import annotations

import json
import os
import socket
import statistics
import time

import torch
import torch.distributed as dist

from olmo_fn.config import OptimizerConfig, ParallelConfig
from olmo_fn.errors import ConfigError
from olmo_fn.metrics import device_peak_flops, peak_memory_bytes
from olmo_fn.model import PRESETS, Transformer, flops_per_token, init_weights
from olmo_fn.optim import build_optimizer
from olmo_fn.parallel import build_mesh, parallelize
from olmo_fn.train_step import train_step


def _single_rank_group() -> None:
    """A one-process NCCL group, so that FSDP2 runs exactly as it would on one rank of many."""
    if dist.is_initialized():
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0"
    )
    dist.init_process_group("nccl")


def run_gpu_train_bench(model: str, micro_batch: int, seq_len: int, steps: int, compile: bool) -> dict:
    """Time `steps` train steps of preset `model` on cuda:0 (after warm-up) and report tokens/s and MFU."""
    if not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is visible here; run the GPU check on a GPU machine")
    cfg = PRESETS[model]()
    device = torch.device("cuda", 0)
    torch.cuda.set_device(device)
    _single_rank_group()
    parallel = ParallelConfig(dp_shard=1)
    mesh = build_mesh(parallel, 1, "cuda")
    with torch.device("meta"):
        net = Transformer(cfg)
    parallelize(net, parallel, mesh, compile=compile, device_type="cuda", precision="amp_bf16")
    net.to_empty(device=device)
    init_weights(net, cfg, seed=0)
    opt = build_optimizer(net, OptimizerConfig(learning_rate=1e-4, eps=1e-8))
    ids = torch.randint(0, cfg.vocab_size, (micro_batch, seq_len), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids}

    def step() -> float:
        out = train_step(net, opt, batch, lr=1e-4, microbatch_size=micro_batch, max_grad_norm=1.0,
                         autocast_dtype=torch.bfloat16)  # fmt: skip
        return out.ce_loss

    warm = [step() for _ in range(3)]
    times = []
    for _ in range(steps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    tps = micro_batch * seq_len / statistics.median(times)
    peak, source = device_peak_flops(device, torch.bfloat16)
    fpt = flops_per_token(cfg, seq_len)
    mfu = tps * fpt / peak if peak else None
    print(
        f"{model} on {torch.cuda.get_device_name(device)}: bf16 autocast, FSDP2 (1 rank), compile={compile}"
    )
    print(f"batch {micro_batch} x {seq_len}, {steps} timed steps: {tps:,.0f} tokens/s, MFU "
          f"{'n/a' if mfu is None else f'{mfu:.1%}'} ({source}), peak memory "
          f"{peak_memory_bytes(device) / 2**30:.1f} GiB, first losses {[round(x, 3) for x in warm]}")  # fmt: skip
    figures = {"bench": "gpu-train", "model": model, "tokens_per_second": tps, "mfu": mfu}
    print(json.dumps(figures))
    dist.destroy_process_group()
    return figures
