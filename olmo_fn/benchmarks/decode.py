"""Decode speed: olmo_fn's generate against transformers' generate on the same weights, beside the roofline.

The roofline is one pass of batch-1 matrix-vector products over every weight matrix (all projections and the
output head): the least work a decode step must do. Variants and the roofline alternate in one process, so a
noisy machine slows them alike; each reports its median new tokens/s (prefill included, as for every variant).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from olmo_fn.benchmarks.train import TrainBench, bench_model_config
from olmo_fn.checkpoint.hf import hf_config, to_hf_state_dict
from olmo_fn.generate import StopRule, generate
from olmo_fn.model import Transformer, init_weights


@dataclass
class DecodeBench:
    """Shape and length of the decode benchmark (defaults: the OLMo 2 bench shape of the Training issue)."""

    d_model: int = 512
    n_layers: int = 8
    n_heads: int = 8
    mlp_hidden: int = 1536
    vocab_size: int = 8192
    batch_size: int = 1
    prompt_len: int = 32
    new_tokens: int = 128
    rounds: int = 5
    """Timed generations per variant (after one warm-up, which also compiles)."""
    variants: tuple[str, ...] = ("olmo_fn-eager", "hf-default", "olmo_fn-compiled", "hf-static-compiled")
    """Which to run: olmo_fn-eager, olmo_fn-compiled, hf-default, hf-static, hf-static-compiled."""
    seed: int = 0


def _olmo_fn(model: Transformer, ids: torch.Tensor, new: int, compiled: bool) -> Callable[[], list[int]]:
    def run() -> list[int]:
        return generate(model, ids, max_new_tokens=new, stop=StopRule(), compile=compiled).tokens[0].tolist()

    return run


def _hf(model: Transformer, ids: torch.Tensor, new: int, variant: str) -> Callable[[], list[int]]:
    from transformers import CompileConfig, Olmo2ForCausalLM

    cfg = model.config
    hf = Olmo2ForCausalLM(hf_config(cfg)).eval()
    hf.load_state_dict(to_hf_state_dict(model.state_dict(), cfg))
    hf.generation_config.eos_token_id = None  # random weights: never stop early, as olmo_fn's run
    kwargs: dict = dict(max_new_tokens=new, do_sample=False, pad_token_id=cfg.pad_token_id)
    if variant != "hf-default":
        kwargs["cache_implementation"] = "static"
        compile_config = CompileConfig()
        compile_config._compile_all_devices = variant == "hf-static-compiled"  # CPU is off by default
        kwargs["compile_config"] = compile_config
        kwargs["disable_compile"] = variant == "hf-static"

    def run() -> list[int]:
        with torch.no_grad():
            return hf.generate(input_ids=ids, **kwargs)[0, ids.shape[1] :].tolist()

    return run


def roofline_pass(model: Transformer) -> Callable[[], None]:
    """One batch-1 matrix-vector product with every weight matrix of the model (input made once)."""
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    weights.append(model.lm_head.weight if model.lm_head.weight is not None else model.embeddings.weight)
    inputs = [torch.randn(1, w.shape[1]) for w in weights]

    def run() -> None:
        with torch.no_grad():
            for x, w in zip(inputs, weights, strict=True):
                F.linear(x, w)

    return run


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_decode_bench(b: DecodeBench) -> dict:
    """Time every variant and the roofline, alternating; print a table and return the figures."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    shape = TrainBench(b.d_model, b.n_layers, b.n_heads, b.mlp_hidden, b.vocab_size, seq_len=512)
    cfg = bench_model_config(shape)
    model = Transformer(cfg).eval()
    init_weights(model, cfg, b.seed)
    ids = torch.randint(
        0, b.vocab_size, (b.batch_size, b.prompt_len), generator=torch.Generator().manual_seed(b.seed)
    )
    runs = {
        v: _olmo_fn(model, ids, b.new_tokens, v.endswith("compiled"))
        if v.startswith("olmo_fn")
        else _hf(model, ids, b.new_tokens, v)
        for v in b.variants
    }
    tokens, warm = {}, {}
    for v, fn in runs.items():  # warm-up, which compiles
        warm[v] = _time(lambda fn=fn, v=v: tokens.__setitem__(v, fn()))
    roof = roofline_pass(model)
    roof()
    times: dict[str, list[float]] = {v: [] for v in [*b.variants, "roofline"]}
    for _ in range(b.rounds):
        for v, fn in runs.items():
            times[v].append(_time(fn))
        times["roofline"].append(statistics.median(_time(roof) for _ in range(20)))
    new = b.batch_size * b.new_tokens
    tps = {v: new / statistics.median(t) for v, t in times.items() if v != "roofline"}
    roof_tps = b.batch_size / statistics.median(times["roofline"])
    return _report(b, cfg, tps, roof_tps, warm, tokens)


def _report(b: DecodeBench, cfg, tps: dict, roof_tps: float, warm: dict, tokens: dict) -> dict:
    n_weights = sum(p.numel() for p in Transformer(cfg).parameters()) - cfg.padded_vocab_size * cfg.d_model
    base = tps.get("hf-default")
    reference = tokens.get("hf-default") or next(iter(tokens.values()))
    print(f"shape: d_model {b.d_model}, {b.n_layers} layers, {b.n_heads} heads, MLP {b.mlp_hidden}, vocab {b.vocab_size}; "
          f"batch {b.batch_size}, prompt {b.prompt_len}, {b.new_tokens} new tokens, greedy, fp32, "
          f"{torch.get_num_threads()} threads; {n_weights / 1e6:.1f}M matrix weights ({n_weights * 4 / 1e6:.0f} MB)")  # fmt: skip
    print(f"{'roofline':20s} {roof_tps:8.1f} tokens/s  (one batch-1 matrix-vector pass over every weight)")
    for v, rate in tps.items():
        vs_hf = f"{rate / base:5.2f}x hf-default" if base else ""
        print(f"{v:20s} {rate:8.1f} tokens/s  {rate / roof_tps:6.1%} of roofline  {vs_hf}  "
              f"warm-up {warm[v]:5.1f} s  same tokens as hf-default: {tokens[v] == reference}")  # fmt: skip
    figures = {
        "bench": "decode",
        "tokens_per_second": tps,
        "roofline_tokens_per_second": roof_tps,
        "fraction_of_roofline": {v: r / roof_tps for v, r in tps.items()},
        "ratio_vs_hf_default": {v: r / base for v, r in tps.items()} if base else {},
        "warmup_seconds": warm,
        "same_tokens": {v: t == reference for v, t in tokens.items()},
    }
    print(json.dumps(figures))
    return figures
