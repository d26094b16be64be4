"""Train-step speed: olmo_fn against transformers' Olmo2ForCausalLM with torch's AdamW, same shape and batch.

Each variant runs in its own fresh process, the variants alternating round by round (harness.py), so the
figures are those of a variant run alone and a noisy machine slows them alike; each reports its median
tokens/s, the spread of the rounds, the ratio to every peer, and MFU against the best CPU peak probed in the
run (none where a variant beats the peak: the probe was disturbed).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

from olmo_fn.benchmarks import harness
from olmo_fn.checkpoint.hf import hf_config, to_hf_state_dict
from olmo_fn.config import ModelConfig, OptimizerConfig
from olmo_fn.errors import ConfigError
from olmo_fn.metrics import CPU_PEAK
from olmo_fn.model import Transformer, flops_per_token, init_weights
from olmo_fn.model.presets import olmo_tiny
from olmo_fn.optim import build_optimizer
from olmo_fn.parallel import apply_compile
from olmo_fn.train_step import train_step

VARIANTS = ("olmo_fn-eager", "hf-eager", "olmo_fn-compiled", "hf-compiled")
Bench = TypeVar("Bench")  # TrainBench or DecodeBench


def _tiny_case() -> dict:
    """The tiny recipe: olmo_tiny's shape, its batch of 16 (small and overhead-bound)."""
    t = olmo_tiny()
    return dict(d_model=t.d_model, n_layers=t.n_layers, n_heads=t.n_heads, mlp_hidden=t.mlp_hidden_size // 2,
                vocab_size=t.vocab_size, seq_len=t.max_sequence_length, batch_size=16)  # fmt: skip


CASES = {
    "default": dict(
        d_model=512, n_layers=8, n_heads=8, mlp_hidden=1536, vocab_size=8192, seq_len=512, batch_size=8
    ),
    "tiny": _tiny_case(),
}
"""Shapes by --case: the OLMo 2 bench shape of the Training issue, and the tiny recipe's."""


@dataclass
class TrainBench:
    """Shape and length of the train-step benchmark: a --case's shape, any field of it overridden by its flag."""

    case: str = "default"
    """'default' (d_model 512, 8 layers, sequence 512, batch 8) or 'tiny' (the tiny recipe: olmo_tiny's d_model
    256, 4 layers, sequence 256, batch 16)."""
    d_model: int | None = None
    """Default: the case's (as for every shape field below)."""
    n_layers: int | None = None
    n_heads: int | None = None
    mlp_hidden: int | None = None
    """SwiGLU activation width (transformers' intermediate_size)."""
    vocab_size: int | None = None
    seq_len: int | None = None
    batch_size: int | None = None
    steps: int = 4
    """Timed steps per worker process, after two warm-up steps (which compile)."""
    repeats: int = 3
    """Rounds: each runs every variant once, in a fresh process each."""
    variants: tuple[str, ...] = VARIANTS
    """Which to run, in this order: olmo_fn-eager, olmo_fn-compiled, hf-eager, hf-compiled."""
    seed: int = 0
    device: str = "cpu"
    """'cpu' (olmo_fn against transformers at the bench shape) or 'cuda' (--model on one GPU, bf16, FSDP2 and
    compile, as `bench.py gpu` times it)."""
    model: str = "olmo-1b"
    """With --device cuda: the preset to time (its published shape)."""
    gpu_micro_batch: int = 8
    """With --device cuda: instances per step."""
    gpu_seq_len: int = 2048
    """With --device cuda: tokens per instance."""
    gpu_steps: int = 30
    """With --device cuda: timed steps, after 3 warm-up steps."""


def resolve_case(b: Bench, variants: tuple[str, ...]) -> Bench:
    """`b` with its case's shape in every shape field left unset; ConfigError for an unknown case or variant."""
    if b.case not in CASES:
        raise ConfigError(f"unknown --case {b.case!r}; choose from {', '.join(CASES)}")
    for v in b.variants:
        if v not in variants:
            raise ConfigError(f"unknown variant {v!r} in --variants; choose from {', '.join(variants)}")
    if b.steps < 1 or b.repeats < 1:
        raise ConfigError(f"--steps and --repeats must be at least 1, not {b.steps} and {b.repeats}")
    shape = {k: v for k, v in CASES[b.case].items() if hasattr(b, k) and getattr(b, k) is None}
    return dataclasses.replace(b, **shape)


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


def _worker(variant: str, config: dict) -> dict:
    """One variant in this fresh process: build, two warm-up steps (compiling), then the timed steps."""
    b = TrainBench(**config)
    cfg = bench_model_config(b)
    ids = torch.randint(
        0, b.vocab_size, (b.batch_size, b.seq_len), generator=torch.Generator().manual_seed(b.seed)
    )
    make = _olmo_fn_step if variant.startswith("olmo_fn") else _hf_step
    step = make(cfg, ids, variant.endswith("compiled"), b.seed)
    first_loss = [step() for _ in range(2)][0]
    return {**harness.timed_steps(step, b.steps), "tokens_per_step": ids.numel(), "first_loss": first_loss}


def run_train_bench(b: TrainBench) -> dict:
    """Time every variant, each in its own process, alternating; print a table and return the figures."""
    if b.device.startswith("cuda"):
        from olmo_fn.benchmarks.gpu_train import run_gpu_train_bench

        return run_gpu_train_bench(b.model, b.gpu_micro_batch, b.gpu_seq_len, b.gpu_steps, compile=True)
    b = resolve_case(b, VARIANTS)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    variants = list(dict.fromkeys(b.variants))
    runs, order = harness.run_rounds(__name__, variants, dataclasses.asdict(b), b.repeats)
    figures = {"bench": "train", "case": b.case, **harness.summarise(runs, "hf-eager"), "order": order}
    fpt, peak = flops_per_token(bench_model_config(b)), CPU_PEAK.flops
    mfu = {v: t * fpt / peak for v, t in figures["tokens_per_second"].items()}
    figures["mfu"] = {v: m if m <= 1.0 else None for v, m in mfu.items()}
    figures.update(
        peak_gflops=peak / 1e9, peak_source=f"{CPU_PEAK.label()} before, between and after the rounds"
    )
    figures["first_loss"] = {v: r[0]["first_loss"] for v, r in runs.items()}
    harness.print_header(order, b.repeats, figures)
    print(f"shape ({b.case}): d_model {b.d_model}, {b.n_layers} layers, {b.n_heads} heads, MLP {b.mlp_hidden}, "
          f"vocab {b.vocab_size}, sequence {b.seq_len}, batch {b.batch_size}, fp32; {fpt / 1e6:.1f} MFLOP/token; "
          f"{b.steps} timed steps per worker after 2 warm-up steps")  # fmt: skip
    print(f"peak {peak / 1e9:.1f} GFLOP/s: {figures['peak_source']} -> 100% MFU = {peak / fpt:,.0f} tokens/s")
    for v in variants:
        m = figures["mfu"][v]
        shown = f"MFU {m:6.1%}" if m is not None else "MFU n/a: peak probe disturbed"
        vs = f"{figures['ratio_vs_hf_eager'][v]:.2f}x hf-eager  " if figures["ratio_vs_hf_eager"] else ""
        harness.print_variant(v, figures, f"{shown}  {vs}first loss {figures['first_loss'][v]:.4f}")
    harness.print_ratios(figures)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    harness.worker_main(_worker)
