"""The GPU check: one command on one H200, under 8 minutes, that tells whether olmo_fn is right and fast there.

1. bf16 logits against transformers' Olmo2ForCausalLM / OlmoForCausalLM on the same weights;
2. training tokens/s and MFU at sequence 4096 for the OLMo-1B and OLMo-2 1B shapes (FSDP2 on one rank,
   compile of the blocks and the head), float8 and activation checkpointing each on and off;
3. decode tokens/s of olmo_fn's compiled generate beside transformers' static-cache generate.

Each row reports its own wall time; a row that runs out of memory or fails is reported as such and the check
goes on (a GPU lease is too scarce to lose the other rows to one); rows stop starting once the time budget is
spent. `--device cpu --tiny` runs every row at toy size on the CPU, which is how the check itself is tested.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import torch
import torch.distributed as dist

from olmo_fn.benchmarks.gpu_train import (
    initial_state,
    load_full_state,
    require_cuda,
    single_rank_group,
    train_row,
)
from olmo_fn.checkpoint.hf import family_of, hf_config, to_hf_state_dict
from olmo_fn.config import ModelConfig, ParallelConfig
from olmo_fn.errors import ConfigError
from olmo_fn.generate import StopRule, generate
from olmo_fn.metrics import device_peak_flops
from olmo_fn.model import PRESETS, Transformer

REFERENCE = "OLMo-core reports about 55k tokens/s per H100 for its 1B"
TARGET_MFU = 0.45
PRESET_NAMES = ("olmo-1b", "olmo2-1b")


@dataclass
class GpuCheck:
    """What the check runs (defaults: every row at full size, about 7 minutes on one H200)."""

    device: Literal["cuda", "cpu"] = "cuda"
    """'cuda': the check on cuda:0. 'cpu': only with --tiny."""
    tiny: bool = False
    """Test the check itself: every row with a 2-layer d64 version of each shape, in fp32 (the logits rows in
    bf16), no compile, float8 rows skipped on the CPU; overrides the sizes below with sequence 64, micro-batch
    2, 1 warm-up + 1 timed step, logits 2 x 32, decode 8 + 16 tokens once after a warm-up."""
    seq_len: int = 4096
    micro_batch: int = 4
    """Instances per training step (4 x 4096 fits a 1B model in bf16 with activation checkpointing off)."""
    warmup_steps: int = 3
    steps: int = 10
    """Timed training steps per row (the median step gives tokens/s)."""
    logits_layers: int = 4
    """Blocks of the preset's shape in the logits comparison (its widths and vocabulary are the real ones)."""
    logits_batch: int = 2
    logits_len: int = 512
    decode_batches: tuple[int, ...] = (1, 16)
    prompt_len: int = 32
    new_tokens: int = 128
    decode_rounds: int = 3
    """Timed generations per decode row, after one warm-up (which compiles)."""
    train_deadline_s: float = 260.0
    """Training rows start only before this many seconds into the check (the rest is decode's)."""
    deadline_s: float = 400.0
    """No row starts after this many seconds: the whole check ends within about 8 minutes."""


@dataclass
class Row:
    """One line of the summary: what ran, how it ended ('ok', 'OOM', 'skipped: ...', 'failed: ...')."""

    section: str
    name: str
    status: str
    wall_seconds: float
    figures: dict = field(default_factory=dict)


def shape(preset: str, tiny: bool) -> ModelConfig:
    """The preset's published shape, or with --tiny a 2-layer d64 model of the same family."""
    cfg = PRESETS[preset]()
    if not tiny:
        return cfg
    return replace(cfg, d_model=64, n_heads=4, n_layers=2, mlp_ratio=8, mlp_hidden_size=None, vocab_size=256,
                   embedding_size=256, eos_token_id=0, pad_token_id=1, max_sequence_length=256)  # fmt: skip


def _free(device: torch.device) -> None:
    """Drop what a finished (or failed) row left: its compiled graphs, its tensors, the cached blocks."""
    gc.collect()
    torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()


class Runner:
    """Runs rows in order under the time budget, catching OOM (and any failure) per row."""

    def __init__(self, device: torch.device):
        self.device, self.rows, self.start = device, [], time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def run(self, section: str, name: str, fn: Callable[[], dict], deadline: float, skip: str | None = None):
        if skip is None and self.elapsed() > deadline:
            skip = f"time budget: {deadline:.0f} s spent"
        figures, status, begin = {}, "ok", time.perf_counter()
        if skip is not None:
            status = f"skipped: {skip}"
        else:
            try:
                figures = fn()
            except torch.cuda.OutOfMemoryError:
                status = "OOM"
            except Exception as e:  # noqa: BLE001 (one broken row must not cost the rest of the run)
                traceback.print_exc()
                status = f"failed: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:160]}"
            _free(self.device)
        row = Row(section, name, status, time.perf_counter() - begin, figures)
        self.rows.append(row)
        print(
            f"[{self.elapsed():6.1f} s] {section} / {name}: {status} ({row.wall_seconds:.1f} s)", flush=True
        )


def _diff(a: torch.Tensor, b: torch.Tensor) -> dict:
    d = (a - b).abs()
    top1 = (a.argmax(-1) == b.argmax(-1)).float().mean()
    return {"max_abs": d.max().item(), "mean_abs": d.mean().item(), "top1_agreement": top1.item()}


@torch.no_grad()
def logits_row(cfg: ModelConfig, state: dict, device: torch.device, batch: int, length: int) -> dict:
    """olmo_fn against transformers on the same weights and tokens: bf16 vs bf16, the bf16 noise floor
    (transformers bf16 vs fp32), and fp32 vs fp32 (the weight mapping itself)."""
    from transformers import Olmo2ForCausalLM, OlmoForCausalLM

    ids = torch.randint(0, cfg.vocab_size, (batch, length), generator=torch.Generator().manual_seed(0))
    ids, vocab = ids.to(device), cfg.vocab_size
    with torch.device("meta"):
        ours = Transformer(cfg)
    ours.to_empty(device=device)
    load_full_state(ours, state)
    with device:
        theirs = (OlmoForCausalLM if family_of(cfg) == "olmo1" else Olmo2ForCausalLM)(hf_config(cfg))
    theirs.load_state_dict(to_hf_state_dict(ours.state_dict(), cfg))
    logits = {}
    for dtype in (torch.float32, torch.bfloat16):
        ours.to(dtype).eval()
        theirs.to(dtype).eval()
        logits[dtype] = (ours(ids)[..., :vocab].float(), theirs(input_ids=ids).logits[..., :vocab].float())
    (o32, t32), (o16, t16) = logits[torch.float32], logits[torch.bfloat16]
    return {"reference": type(theirs).__name__, "bf16 olmo_fn vs transformers": _diff(o16, t16),
            "bf16 noise: transformers bf16 vs fp32": _diff(t16, t32),
            "fp32 olmo_fn vs transformers": _diff(o32, t32)}  # fmt: skip


def _timed(fn: Callable[[], object], rounds: int) -> tuple[float, float]:
    """(warm-up seconds, median seconds of `rounds` more calls)."""
    start = time.perf_counter()
    fn()
    warm = time.perf_counter() - start
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return warm, statistics.median(times)


@torch.no_grad()
def decode_row(cfg: ModelConfig, state: dict, device: torch.device, batch: int, check: GpuCheck,
               variant: str) -> dict:  # fmt: skip
    """New tokens/s of greedy decoding in bf16 with eos off (every row runs all new tokens), prefill included."""
    ids = torch.randint(
        0, cfg.vocab_size, (batch, check.prompt_len), generator=torch.Generator().manual_seed(0)
    )
    ids = ids.to(device)
    if variant == "olmo_fn":
        with torch.device("meta"):
            model = Transformer(cfg)
        model.to_empty(device=device)
        load_full_state(model, state)
        model.to(torch.bfloat16).eval()
        compile = not check.tiny
        run = lambda: generate(model, ids, max_new_tokens=check.new_tokens, stop=StopRule(), compile=compile)
    else:
        from transformers import Olmo2ForCausalLM

        with device:
            hf = Olmo2ForCausalLM(hf_config(cfg))
        hf.load_state_dict(to_hf_state_dict(state, cfg))
        hf.to(torch.bfloat16).eval()
        hf.generation_config.eos_token_id = None
        run = lambda: hf.generate(input_ids=ids, max_new_tokens=check.new_tokens, do_sample=False,
                                  pad_token_id=cfg.pad_token_id, cache_implementation="static",
                                  disable_compile=True)  # fmt: skip
    warm, seconds = _timed(run, check.decode_rounds)
    return {"tokens_per_second": batch * check.new_tokens / seconds, "warmup_seconds": warm}


def run_gpu_check(check: GpuCheck) -> dict:
    """Run every row, print each as it ends, then the summary table and one JSON line; return the figures."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if check.device == "cuda":
        device = require_cuda()
    elif not check.tiny:
        raise ConfigError("--device cpu: the full check needs a GPU; add --tiny to run every row at toy size")
    else:
        device = torch.device("cpu")
    if check.tiny:
        check = replace(check, seq_len=64, micro_batch=2, warmup_steps=1, steps=1, logits_layers=2,
                        logits_len=32, prompt_len=8, new_tokens=16, decode_rounds=1)  # fmt: skip
    runner, states = Runner(device), {}
    for preset in PRESET_NAMES:

        def draw(p: str = preset) -> dict:
            states[p] = initial_state(shape(p, check.tiny))
            return {"parameters": sum(t.numel() for t in states[p].values())}

        runner.run("setup", f"initial weights, {preset}", draw, check.deadline_s)
    for preset in PRESET_NAMES:
        cfg = replace(shape(preset, check.tiny), n_layers=check.logits_layers)
        fn = lambda cfg=cfg, p=preset: logits_row(
            cfg, states[p], device, check.logits_batch, check.logits_len
        )
        runner.run("logits", preset, fn, check.deadline_s)
    single_rank_group(device)
    try:
        _train_rows(runner, check, device, states)
    finally:
        dist.destroy_process_group()
    cfg = shape("olmo2-1b", check.tiny)
    for variant in ("olmo_fn", "transformers"):
        for batch in check.decode_batches:
            fn = lambda v=variant, b=batch: decode_row(cfg, states["olmo2-1b"], device, b, check, v)
            runner.run("decode", f"{variant}, batch {batch}", fn, check.deadline_s)
    return _report(runner, check, device)


def _train_rows(runner: Runner, check: GpuCheck, device: torch.device, states: dict) -> None:
    """Most telling first, so that a spent budget skips the least: AC off before on, bf16 before float8."""
    for ac in ("none", "full"):
        for float8 in (False, True):
            for preset in PRESET_NAMES:
                parallel = ParallelConfig(dp_shard=1, float8=float8, activation_checkpointing=ac)
                name = f"{preset}, float8 {'on' if float8 else 'off'}, AC {'on' if ac == 'full' else 'off'}"
                skip = "needs CUDA" if float8 and device.type != "cuda" else None
                fn = lambda p=preset, par=parallel: train_row(
                    shape(p, check.tiny), par, device, check.micro_batch, check.seq_len, check.warmup_steps,
                    check.steps, not check.tiny, states[p])  # fmt: skip
                runner.run("train", name, fn, check.train_deadline_s, skip)


def _fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def _report(runner: Runner, check: GpuCheck, device: torch.device) -> dict:
    import transformers

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (--tiny)"
    peak, source = device_peak_flops(device, torch.bfloat16)
    rows = {r.section: [] for r in runner.rows}
    for r in runner.rows:
        rows[r.section].append(r)
    print(f"\nGPU check on {name}: torch {torch.__version__}, transformers {transformers.__version__}; "
          f"MFU against {f'{peak / 1e12:.4g} TFLOP/s' if peak else 'n/a'} ({source})")  # fmt: skip
    print(f"\n1. logits against transformers: {check.logits_layers} blocks of each preset's shape, batch "
          f"{check.logits_batch} x {check.logits_len} random tokens, olmo_fn's random init")  # fmt: skip
    print(f"  {'model':9s} {'comparison':40s} {'max |d|':>9s} {'mean |d|':>9s} {'top-1':>7s} {'wall s':>7s}")
    for r in rows["logits"]:
        cases = [(k, v) for k, v in r.figures.items() if k != "reference"] or [(r.status, None)]
        for k, v in cases:
            cells = f"{v['max_abs']:9.4f} {v['mean_abs']:9.5f} {v['top1_agreement']:7.1%}" if v else ""
            print(f"  {r.name:9s} {k:40s} {cells:27s} {r.wall_seconds:7.1f}")
    print(f"\n2. training, sequence {check.seq_len}, micro-batch {check.micro_batch}, FSDP2 (1 rank)"
          f"{'' if check.tiny else ' + compile (blocks, head), bf16 autocast'}, AdamW; {check.warmup_steps} "
          f"warm-up + {check.steps} timed steps; MFU counts model FLOPs only (float8 too, against the bf16 peak)")  # fmt: skip
    print(
        f"  {'row':32s} {'tokens/s':>10s} {'MFU':>7s} {'step s':>7s} {'peak GiB':>9s} {'loss':>7s} {'wall s':>7s}"
    )
    for r in rows["train"]:
        f = r.figures
        cells = (f"{f['tokens_per_second']:10,.0f} {_fmt(f['mfu'], '7.1%')} {f['step_seconds']:7.3f} "
                 f"{f['peak_memory_gib']:9.1f} {f['first_loss']:7.3f}") if f else f"{r.status:50s}"  # fmt: skip
        print(f"  {r.name:32s} {cells} {r.wall_seconds:7.1f}")
    base = next(
        (r.figures for r in rows["train"] if r.name == "olmo-1b, float8 off, AC off" and r.figures), {}
    )
    mfu = base.get("mfu")
    verdict = "n/a" if mfu is None else f"{mfu:.1%}, {'met' if mfu >= TARGET_MFU else 'not met'}"
    print(f"  reference: {REFERENCE}")
    print(f"  target: >= {TARGET_MFU:.0%} MFU for the 1B shape; olmo-1b, float8 off, AC off: {verdict}")
    print(f"\n3. decode, olmo2-1b shape, random weights, bf16, prompt {check.prompt_len} + {check.new_tokens} new "
          f"tokens, greedy, eos off; olmo_fn generate(compile={not check.tiny}), transformers generate with a "
          "static cache (no compile); median of "
          f"{check.decode_rounds} after a warm-up")  # fmt: skip
    print(f"  {'row':24s} {'tokens/s':>10s} {'warm-up s':>10s} {'wall s':>7s}")
    for r in rows["decode"]:
        f = r.figures
        cells = f"{f['tokens_per_second']:10,.1f} {f['warmup_seconds']:10.1f}" if f else f"{r.status:21s}"
        print(f"  {r.name:24s} {cells} {r.wall_seconds:7.1f}")
    setup = sum(r.wall_seconds for r in rows["setup"])
    failed = [f"{r.section} / {r.name}" for r in runner.rows if r.status.startswith("failed")]
    total = runner.elapsed()
    print(f"\ntotal wall time {total:.1f} s (initial weights {setup:.1f} s; rows start only before "
          f"{check.deadline_s:.0f} s, training rows before {check.train_deadline_s:.0f} s); failed rows: "
          f"{len(failed)}")  # fmt: skip
    figures = {"bench": "gpu-check", "device": name, "torch": torch.__version__, "wall_seconds": total,
               "failed": failed, "rows": [asdict(r) for r in runner.rows]}  # fmt: skip
    print(json.dumps(figures))
    return figures
