"""Decode speed: olmo_fn's generate against transformers' generate on the same weights, beside the roofline.

The roofline is one pass of batch-1 matrix-vector products over every weight matrix (all projections and the
output head): the least work a decode step must do. Each variant, and the roofline, runs in its own fresh
process, alternating round by round (harness.py), so the figures are those of a variant run alone and a noisy
machine slows them alike; each reports its median new tokens/s (prefill included, as for every variant).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from olmo_fn.benchmarks import harness
from olmo_fn.benchmarks.train import CASES, TrainBench, bench_model_config, resolve_case
from olmo_fn.checkpoint.hf import hf_config, to_hf_state_dict
from olmo_fn.config import ModelConfig
from olmo_fn.generate import StopRule, generate
from olmo_fn.model import Transformer, init_weights
from olmo_fn.quantize import quantize_int8

VARIANTS = (
    "olmo_fn-eager",
    "hf-default",
    "olmo_fn-compiled",
    "hf-static-compiled",
    "hf-static",
    "olmo_fn-int8",
    "olmo_fn-int8-compiled",
)
ROOFLINE_PASSES = 20  # timed roofline passes per timed generation: a pass is short, so time many


@dataclass
class DecodeBench:
    """Shape and length of the decode benchmark: a --case's model shape, any field of it overridden by its flag."""

    case: str = "default"
    """'default' (d_model 512, 8 layers) or 'tiny' (olmo_tiny's d_model 256, 4 layers); batch 1 in both."""
    d_model: int | None = None
    """Default: the case's (as for every shape field below)."""
    n_layers: int | None = None
    n_heads: int | None = None
    mlp_hidden: int | None = None
    vocab_size: int | None = None
    batch_size: int = 1
    prompt_len: int = 32
    new_tokens: int = 128
    steps: int = 3
    """Timed generations per worker process (after one warm-up, which also compiles)."""
    repeats: int = 3
    """Rounds: each runs every variant and the roofline once, in a fresh process each."""
    variants: tuple[str, ...] = ("olmo_fn-eager", "hf-default", "olmo_fn-compiled", "hf-static-compiled")
    """Which to run, in this order: olmo_fn-eager, olmo_fn-compiled, hf-default, hf-static, hf-static-compiled,
    olmo_fn-int8, olmo_fn-int8-compiled (int8 weight-only projections; they add the int8 kernel's pass to the
    rounds). The roofline runs in every round."""
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


def roofline_pass(model: Transformer, int8: bool = False) -> Callable[[], None]:
    """One batch-1 matrix-vector product with every weight matrix of the model (input made once).

    int8: the projections as int8 with per-channel scales through PyTorch's weight-only int8 kernel
    (torch._weight_int8pack_mm), the head in fp32, as quantize_int8 leaves it: what int8 decoding can reach."""
    projections = [m.weight.detach() for m in model.modules() if isinstance(m, torch.nn.Linear)]
    head = model.lm_head.weight if model.lm_head.weight is not None else model.embeddings.weight
    calls = [(F.linear, w) for w in [*projections, head.detach()]]
    if int8:
        scales = [w.abs().amax(1).clamp_min(1e-12) / 127 for w in projections]
        packed = [(w / s[:, None]).round().to(torch.int8) for w, s in zip(projections, scales, strict=True)]
        int8_mm = torch._weight_int8pack_mm
        calls = [(lambda x, w, s=s: int8_mm(x, w, s), w) for w, s in zip(packed, scales, strict=True)]
        calls.append((F.linear, head.detach()))
    inputs = [torch.randn(1, w.shape[1]) for _, w in calls]

    def run() -> None:
        with torch.no_grad():
            for x, (fn, w) in zip(inputs, calls, strict=True):
                fn(x, w)

    return run


def _model_config(b: DecodeBench) -> ModelConfig:
    seq_len = max(CASES[b.case]["seq_len"], b.prompt_len + b.new_tokens)
    return bench_model_config(
        TrainBench(b.case, b.d_model, b.n_layers, b.n_heads, b.mlp_hidden, b.vocab_size, seq_len)
    )


def _worker(variant: str, config: dict) -> dict:
    """One variant (or the roofline) in this fresh process: build, one warm-up (compiling), the timed steps."""
    b = DecodeBench(**config)
    cfg = _model_config(b)
    model = Transformer(cfg).eval()
    init_weights(model, cfg, b.seed)
    if variant.startswith("roofline"):
        roof = roofline_pass(model, int8=variant == "roofline-int8")
        roof()
        return {**harness.timed_steps(roof, b.steps * ROOFLINE_PASSES), "tokens_per_step": b.batch_size}
    ids = torch.randint(
        0, b.vocab_size, (b.batch_size, b.prompt_len), generator=torch.Generator().manual_seed(b.seed)
    )
    if "int8" in variant:
        quantize_int8(model)
    if variant.startswith("olmo_fn"):
        run = _olmo_fn(model, ids, b.new_tokens, variant.endswith("compiled"))
    else:
        run = _hf(model, ids, b.new_tokens, variant)
    start = time.perf_counter()
    tokens = run()  # the warm-up, which compiles
    warm = time.perf_counter() - start
    return {**harness.timed_steps(run, b.steps), "tokens_per_step": b.batch_size * b.new_tokens,
            "warmup_seconds": warm, "tokens": tokens}  # fmt: skip


def run_decode_bench(b: DecodeBench) -> dict:
    """Time every variant and the roofline, each in its own process, alternating; print a table, return figures."""
    b = resolve_case(b, VARIANTS)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    variants = list(dict.fromkeys(b.variants))
    roofs = ["roofline", *(["roofline-int8"] if any("int8" in v for v in variants) else [])]
    runs, order = harness.run_rounds(__name__, [*variants, *roofs], dataclasses.asdict(b), b.repeats)
    every_worker = [x for r in runs.values() for x in r]
    roof = harness.summarise({r: runs.pop(r) for r in roofs}, "roofline")
    figures = {"bench": "decode", "case": b.case, **harness.summarise(runs, "hf-default"), "order": order}
    figures["usage_all"] = harness.usage(every_worker)
    roof_tps = roof["tokens_per_second"]["roofline"]
    ref = "hf-default" if "hf-default" in runs else variants[0]
    figures.update(
        roofline_tokens_per_second=roof_tps,
        roofline_spread=roof["spread"]["roofline"],
        int8_kernel_pass_tokens_per_second=roof["tokens_per_second"].get("roofline-int8"),
        fraction_of_roofline={v: r / roof_tps for v, r in figures["tokens_per_second"].items()},
        warmup_seconds={v: [x["warmup_seconds"] for x in r] for v, r in runs.items()},
        same_tokens={v: all(x["tokens"] == runs[ref][0]["tokens"] for x in r) for v, r in runs.items()},
    )
    _report(b, figures, roof, ref)
    print(json.dumps(figures))
    return figures


def _report(b: DecodeBench, figures: dict, roof: dict, ref: str) -> None:
    cfg = _model_config(b)
    with torch.device("meta"):
        n_weights = (
            sum(p.numel() for p in Transformer(cfg).parameters()) - cfg.padded_vocab_size * cfg.d_model
        )
    harness.print_header(figures["order"], b.repeats, figures)
    print(f"shape ({b.case}): d_model {b.d_model}, {b.n_layers} layers, {b.n_heads} heads, MLP {b.mlp_hidden}, "
          f"vocab {b.vocab_size}; batch {b.batch_size}, prompt {b.prompt_len}, {b.new_tokens} new tokens, greedy, "
          f"fp32; {n_weights / 1e6:.1f}M matrix weights ({n_weights * 4 / 1e6:.0f} MB); {b.steps} timed "
          "generations per worker after one warm-up")  # fmt: skip
    print(
        "roofline: one batch-1 matrix-vector pass over every weight, measured in its own process each round"
    )
    harness.print_variant("roofline", roof, "")
    if "roofline-int8" in roof["tokens_per_second"]:
        print("roofline-int8: the same pass with the projections in int8 through torch._weight_int8pack_mm "
              f"({n_weights / 1e6:.0f} MB of int8 projections; the head stays fp32)")  # fmt: skip
        harness.print_variant("roofline-int8", roof, "")
    for v in figures["tokens_per_second"]:
        vs = (
            f"{figures['ratio_vs_hf_default'][v]:5.2f}x hf-default  "
            if figures["ratio_vs_hf_default"]
            else ""
        )
        harness.print_variant(v, figures, f"{figures['fraction_of_roofline'][v]:6.1%} of roofline  {vs}warm-up "
                              f"<= {max(figures['warmup_seconds'][v]):5.1f} s  same tokens as {ref}: "
                              f"{figures['same_tokens'][v]}")  # fmt: skip
    harness.print_ratios(figures)


if __name__ == "__main__":
    harness.worker_main(_worker)
