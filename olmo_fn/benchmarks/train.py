"""Train-step speed: olmo_fn against transformers' Olmo2ForCausalLM with torch's AdamW, same shape and batch.

The variants alternate step by step in one process, so a noisy machine slows them alike; each reports its
median tokens/s, the ratio to transformers eager, and MFU against the peak measured in the same run.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from olmo_fn.checkpoint.hf import hf_config, to_hf_state_dict
from olmo_fn.config import ModelConfig, OptimizerConfig
from olmo_fn.metrics import cpu_matmul_peak
from olmo_fn.model import Transformer, flops_per_token, init_weights
from olmo_fn.optim import build_optimizer
from olmo_fn.parallel import apply_compile
from olmo_fn.train_step import train_step


@dataclass
class TrainBench:
    """Shape and length of the train-step benchmark (defaults: the OLMo 2 bench shape of the Training issue)."""

    d_model: int = 512
    n_layers: int = 8
    n_heads: int = 8
    mlp_hidden: int = 1536
    """SwiGLU activation width (transformers' intermediate_size)."""
    vocab_size: int = 8192
    seq_len: int = 512
    batch_size: int = 8
    steps: int = 8
    """Timed steps per variant, after two warm-up steps."""
    variants: tuple[str, ...] = ("olmo_fn-eager", "hf-eager", "olmo_fn-compiled", "hf-compiled")
    """Which to run: olmo_fn-eager, olmo_fn-compiled, hf-eager, hf-compiled."""
    seed: int = 0
    device: str = "cpu"
    """'cpu' (olmo_fn against transformers at the bench shape) or 'cuda' (the GPU check: --model on one GPU,
    bf16, FSDP2 and compile)."""
    model: str = "olmo-1b"
    """With --device cuda: the preset to time (its published shape)."""
    gpu_micro_batch: int = 8
    """With --device cuda: instances per step."""
    gpu_seq_len: int = 2048
    """With --device cuda: tokens per instance."""
    gpu_steps: int = 30
    """With --device cuda: timed steps, after 3 warm-up steps."""


def bench_model_config(b: TrainBench) -> ModelConfig:
    return ModelConfig(
        d_model=b.d_model, n_heads=b.n_heads, n_layers=b.n_layers, mlp_hidden_size=2 * b.mlp_hidden,
        vocab_size=b.vocab_size, embedding_size=b.vocab_size, eos_token_id=0, pad_token_id=1,
        max_sequence_length=b.seq_len, layer_norm_type="rms", layer_norm_with_affine=True, layer_norm_eps=1e-6,
        attention_layer_norm=True, norm_after=True, rope_theta=500_000.0, init_fn="normal", init_cutoff_factor=3.0,
    )  # fmt: skip


def _olmo_fn_step(cfg: ModelConfig, ids: torch.Tensor, compiled: bool, seed: int) -> Callable[[], float]:
    model = Transformer(cfg)
    init_weights(model, cfg, seed)
    if compiled:
        apply_compile(model)
    opt = build_optimizer(model, OptimizerConfig(learning_rate=1e-4, eps=1e-8, weight_decay=0.1))
    batch = {"input_ids": ids}

    def step() -> float:
        out = train_step(model, opt, batch, lr=1e-4, microbatch_size=ids.shape[0], max_grad_norm=1.0,
                         normalization="label_tokens")  # fmt: skip
        return out.ce_loss

    return step


def _hf_step(cfg: ModelConfig, ids: torch.Tensor, compiled: bool, seed: int) -> Callable[[], float]:
    from transformers import Olmo2ForCausalLM

    model = Olmo2ForCausalLM(hf_config(cfg))
    reference = Transformer(cfg)
    init_weights(reference, cfg, seed)
    model.load_state_dict(to_hf_state_dict(reference.state_dict(), cfg))
    model.train()
    forward = torch.compile(model) if compiled else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, eps=1e-8, weight_decay=0.1)

    def step() -> float:
        loss = forward(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    return step


def run_train_bench(b: TrainBench) -> dict:
    """Time every variant, alternating; print a table and return the figures."""
    if b.device.startswith("cuda"):
        from olmo_fn.benchmarks.gpu_train import run_gpu_train_bench

        return run_gpu_train_bench(b.model, b.gpu_micro_batch, b.gpu_seq_len, b.gpu_steps, compile=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = bench_model_config(b)
    ids = torch.randint(
        0, b.vocab_size, (b.batch_size, b.seq_len), generator=torch.Generator().manual_seed(b.seed)
    )
    makers = {"olmo_fn": _olmo_fn_step, "hf": _hf_step}
    steps = {v: makers[v.split("-")[0]](cfg, ids, v.endswith("compiled"), b.seed) for v in b.variants}
    first_loss = {v: [f() for _ in range(2)][0] for v, f in steps.items()}  # warm-up (and compilation)
    times: dict[str, list[float]] = {v: [] for v in b.variants}
    for _ in range(b.steps):
        for v, f in steps.items():
            start = time.perf_counter()
            f()
            times[v].append(time.perf_counter() - start)
    peak = cpu_matmul_peak()
    fpt = flops_per_token(cfg)
    tokens = b.batch_size * b.seq_len
    tps = {v: tokens / statistics.median(t) for v, t in times.items()}
    base = tps.get("hf-eager")
    print(f"shape: d_model {b.d_model}, {b.n_layers} layers, {b.n_heads} heads, MLP {b.mlp_hidden}, vocab "
          f"{b.vocab_size}, sequence {b.seq_len}, batch {b.batch_size}, fp32; {fpt / 1e6:.1f} MFLOP/token")  # fmt: skip
    print(f"peak (fp32 matmul probe): {peak / 1e9:.1f} GFLOP/s -> 100% MFU = {peak / fpt:.0f} tokens/s")
    for v in b.variants:
        ratio = f"{tps[v] / base:.2f}x hf-eager" if base else ""
        print(
            f"{v:18s} {tps[v]:8.1f} tokens/s  MFU {tps[v] * fpt / peak:6.1%}  {ratio}  first loss {first_loss[v]:.4f}"
        )
    figures = {
        "bench": "train",
        "peak_gflops": peak / 1e9,
        "tokens_per_second": tps,
        "mfu": {v: tps[v] * fpt / peak for v in tps},
        "ratio_vs_hf_eager": {v: tps[v] / base for v in tps} if base else {},
    }
    print(json.dumps(figures))
    return figures
