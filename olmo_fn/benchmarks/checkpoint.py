"""Checkpoint speed: saving and loading ~1 GB of fp32 weights + AdamW state beside a raw write/read of the
same bytes (one file, fsynced, like the checkpoint files). Saving must reach at least half the raw rate.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass

import torch

from olmo_fn.checkpoint import load_checkpoint, save_checkpoint
from olmo_fn.config import ModelConfig
from olmo_fn.model import Transformer


@dataclass
class CheckpointBench:
    """Size and place of the checkpoint benchmark."""

    d_model: int = 1024
    n_layers: int = 7
    vocab_size: int = 32768
    """Defaults: 84M parameters, so weights + exp_avg + exp_avg_sq are about 1.0 GB of fp32."""
    folder: str | None = None
    """Local folder to write to (default: a temporary folder, removed afterwards)."""


def _config(bench: CheckpointBench) -> ModelConfig:
    return ModelConfig(
        d_model=bench.d_model, n_heads=16, n_layers=bench.n_layers, vocab_size=bench.vocab_size,
        embedding_size=bench.vocab_size, weight_tying=True, eos_token_id=0, max_sequence_length=128,
    )  # fmt: skip


def _model(cfg: ModelConfig) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    model = Transformer(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt.step()  # fills exp_avg / exp_avg_sq
    return model, opt


def _raw(folder: str, tensors: list[torch.Tensor]) -> tuple[float, float]:
    """Seconds to write (with fsync) and read back the same bytes as one file."""
    path = os.path.join(folder, "raw.bin")
    start = time.perf_counter()
    with open(path, "wb") as f:
        for t in tensors:
            f.write(memoryview(t.detach().reshape(-1).view(torch.uint8).numpy()))
        f.flush()
        os.fsync(f.fileno())
    written = time.perf_counter() - start
    start = time.perf_counter()
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass
    read = time.perf_counter() - start
    os.remove(path)
    return written, read


def _timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def run_checkpoint_bench(bench: CheckpointBench) -> dict:
    """Print and return MB/s of raw write/read (best of three, interleaved with the saves), native and sharded save/load, save/raw ratios."""
    cfg = _config(bench)
    model, opt = _model(cfg)
    tensors = [p for p in model.parameters()] + [v for s in opt.state.values() for v in s.values() if v.dim()]
    nbytes = sum(t.numel() * t.element_size() for t in tensors)
    folder = bench.folder or tempfile.mkdtemp(prefix="olmo_fn_ckpt_bench_")
    os.makedirs(folder, exist_ok=True)
    try:
        _raw(folder, tensors)  # warm-up: the first write of a fresh file set runs several times slower here
        raws = [_raw(folder, tensors)]
        times = {}
        for sharded in (False, True):
            kind = "sharded" if sharded else "unsharded"
            times[f"{kind}_save"], path = _timed(
                save_checkpoint, folder, 1, model, opt, {"step": 1}, {}, sharded=sharded, keep=1
            )
            fresh = Transformer(cfg)
            fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-4)
            times[f"{kind}_load"], _ = _timed(load_checkpoint, path, fresh, fresh_opt)
            raws.append(_raw(folder, tensors))  # the disk's rate drifts: raw runs between the saves
        times |= {"raw_write": min(w for w, _ in raws), "raw_read": min(r for _, r in raws)}
    finally:
        if bench.folder is None:
            shutil.rmtree(folder, ignore_errors=True)
    mb = nbytes / 1e6
    result = {"bytes": nbytes} | {f"{k}_MBps": round(mb / v, 1) for k, v in times.items()}
    for kind in ("unsharded", "sharded"):
        result[f"{kind}_save_vs_raw_write"] = round(times["raw_write"] / times[f"{kind}_save"], 3)
    print(json.dumps(result, indent=1))
    return result
