"""Checkpoint loading on 1, 2 and 4 gloo processes: ~1 GB of fp32 weights + AdamW state (the OLMo 2 shape,
untied head) loaded from each full-state format (olmo_fn native, original OLMo, Hugging Face) and from a
sharded checkpoint into a model built the way training builds it (meta device, FSDP2, `to_empty`).

Each load runs in fresh worker processes (torchrun for several ranks, a plain process for one), which report
their load time and peak resident memory (their own VmHWM: getrusage's ru_maxrss would include the launching
process's peak, which Linux carries over exec) before and after the load; a plain read of the folder's
files (page cache warm) runs right before each load. Targets: total peak memory of N ranks at most 1.5x the
checkpoint's bytes + N bare processes, and loading at least half the raw read rate.

The workers are this module: `python -m olmo_fn.benchmarks.load worker MODE ...` (see `_worker_main`).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import yaml

from olmo_fn.checkpoint import load_checkpoint, save_checkpoint
from olmo_fn.checkpoint.hf_dir import write_hf_dir
from olmo_fn.checkpoint.load import open_source
from olmo_fn.checkpoint.olmo import to_olmo_state_dict
from olmo_fn.checkpoint.olmo_dir import olmo_param_order
from olmo_fn.checkpoint.source import collect
from olmo_fn.config import ModelConfig, OptimizerConfig, ParallelConfig, TrainConfig
from olmo_fn.dist import init_distributed, shutdown_distributed
from olmo_fn.errors import ConfigError
from olmo_fn.model import Transformer, init_weights
from olmo_fn.optim import build_optimizer
from olmo_fn.original.mapping import original_model_section
from olmo_fn.train import build_model

FORMATS = ("unsharded", "sharded", "olmo", "hf")
MEMORY_FACTOR = 1.5  # total peak RSS of N ranks <= MEMORY_FACTOR x checkpoint bytes + N x bare process
SPEED_FACTOR = 0.5  # load MB/s >= SPEED_FACTOR x raw read MB/s


@dataclass
class LoadBench:
    """Size, formats and process counts of the load benchmark."""

    d_model: int = 768
    n_heads: int = 12
    n_layers: int = 6
    vocab_size: int = 32768
    """Defaults: 85.7M parameters (untied embedding and head), so weights + exp_avg + exp_avg_sq are about
    1.03 GB of fp32."""
    ranks: tuple[int, ...] = (1, 2, 4)
    """Process counts to load with (1: a plain process; more: torchrun, gloo, FSDP2 over all of them)."""
    formats: tuple[str, ...] = FORMATS
    """Checkpoint kinds to load: unsharded (olmo_fn native), sharded (DCP), olmo (original OLMo), hf."""
    repeats: int = 2
    """Loads per format and process count (fresh processes each time, each after its own raw read); the
    fastest is reported, and the highest memory."""
    folder: str | None = None
    """Where to make the temporary folder of checkpoints (default: the system's temp folder); the
    temporary folder is removed afterwards."""


def model_config(b: LoadBench) -> ModelConfig:
    """The OLMo 2 architecture (RMSNorm with weights after each sub-layer, QK-norm, untied head)."""
    return ModelConfig(
        d_model=b.d_model, n_heads=b.n_heads, n_layers=b.n_layers, vocab_size=b.vocab_size,
        embedding_size=b.vocab_size, layer_norm_type="rms", layer_norm_with_affine=True, layer_norm_eps=1e-6,
        attention_layer_norm=True, norm_after=True, weight_tying=False, rope_theta=500_000.0,
        eos_token_id=0, pad_token_id=1, max_sequence_length=128,
    )  # fmt: skip


# --- workers ---------------------------------------------------------------------------------------------


def ru_maxrss_bytes() -> int:
    """getrusage's peak resident memory (KiB on Linux, bytes on macOS). On Linux it carries over exec: a
    process started by a bigger one reports at least the starter's peak (the benchmark's writer, torchrun's
    agent), so the figures below use VmHWM where there is one."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def peak_rss_bytes() -> int:
    """This process's own peak resident memory: VmHWM of /proc/self/status (Linux), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return ru_maxrss_bytes()


def _worker(mode: str, path: str, model_json: str, out: str, with_optim: bool) -> None:
    """One rank: `baseline` starts the process group and stops; `load` builds the model as training does
    and times load_checkpoint. Writes {out}/rank{R}.json."""
    env = init_distributed(ParallelConfig())
    result = {"rank": env.rank, "world_size": env.world_size, "threads": torch.get_num_threads()}
    if mode == "load":
        cfg = TrainConfig(model=ModelConfig(**json.loads(model_json)))
        model = build_model(cfg, env.device, env.mesh, init=False)  # as training builds it for a load
        optimizer = build_optimizer(model, cfg.optimizer) if with_optim else None
        gc.collect()
        result["rss_before"] = peak_rss_bytes()
        if dist.is_initialized():
            dist.barrier()
        start = time.perf_counter()
        loaded = load_checkpoint(path, model, optimizer)
        result["seconds"] = time.perf_counter() - start
        result["kind"] = loaded.kind
        result["optimizer_states"] = len(optimizer.state) if optimizer is not None else 0
    result["rss_peak"] = peak_rss_bytes()
    result["ru_maxrss"] = ru_maxrss_bytes()
    Path(out, f"rank{env.rank}.json").write_text(json.dumps(result))
    shutdown_distributed()


def _worker_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m olmo_fn.benchmarks.load worker")
    parser.add_argument("mode", choices=("baseline", "load"))
    parser.add_argument("--path", default="")
    parser.add_argument("--model", default="{}", help="ModelConfig as JSON")
    parser.add_argument("--out", required=True, help="folder for rank{R}.json")
    parser.add_argument("--no-optim", action="store_true")
    a = parser.parse_args(argv)
    _worker(a.mode, a.path, a.model, a.out, not a.no_optim)


def launch(nproc: int, out: str, *args: str) -> list[dict]:
    """Run the worker on nproc fresh processes; their reports, by rank."""
    os.makedirs(out)
    module = ["-m", "olmo_fn.benchmarks.load", "worker"]
    if nproc == 1:
        cmd = [sys.executable, *module]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        cmd += module
    proc = subprocess.run([*cmd, *args, "--out", out], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(
            f"worker on {nproc} process(es) failed:\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}"
        )
    reports = [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(nproc)]
    shutil.rmtree(out)
    return reports


# --- writing the checkpoints -------------------------------------------------------------------------------


def split_state(native: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(model tensors, optimizer state tensors by "{param}.{key}") of a full-state checkpoint, in memory."""
    tensors = collect(open_source(native))
    model = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    optim = {k[len("optim.state.") :]: v for k, v in tensors.items() if k.startswith("optim.state.")}
    return model, optim


def write_original_dir(native: str, out: str, cfg: ModelConfig, trainer_state: dict) -> None:
    """An original OLMo unsharded folder (config.yaml, model.pt, optim.pt with integer parameter ids in the
    original's registration order, train.pt) holding what the native checkpoint holds."""
    model, optim = split_state(native)
    os.makedirs(out)
    config = {"model": original_model_section(cfg), "optimizer": {"name": "adamw"}}
    Path(out, "config.yaml").write_text(yaml.safe_dump(config))
    torch.save(to_olmo_state_dict(model, cfg), os.path.join(out, "model.pt"))
    order = olmo_param_order(cfg)
    state: dict[int, dict] = {}
    for key in ("exp_avg", "exp_avg_sq"):
        fused = to_olmo_state_dict({n: optim[f"{n}.{key}"] for n in model}, cfg)
        for i, name in enumerate(order):
            state.setdefault(i, {})[key] = fused[name]
    step = next(v for k, v in optim.items() if k.endswith(".step"))
    for entry in state.values():
        entry["step"] = step.clone()
    groups = [{"lr": 1e-3, "params": list(range(len(order)))}]
    torch.save({"state": state, "param_groups": groups}, os.path.join(out, "optim.pt"))
    torch.save(trainer_state, os.path.join(out, "train.pt"))


def write_checkpoints(root: str, cfg: ModelConfig) -> tuple[dict[str, str], int]:
    """Every format's folder under root, from one model with AdamW state; (paths, tensor bytes)."""
    model = Transformer(cfg)
    init_weights(model, cfg, seed=0)
    opt = build_optimizer(model, OptimizerConfig())
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt.step()  # fills exp_avg / exp_avg_sq
    for p in model.parameters():
        p.grad = None
    tensors = [*model.parameters()] + [v for s in opt.state.values() for v in s.values() if v.dim()]
    nbytes = sum(t.numel() * t.element_size() for t in tensors)
    trainer = {"step": 1, "tokens_seen": 0, "epoch": 0, "examples_seen_this_epoch": 0, "world_size": 1}
    config = {"model": dataclasses.asdict(cfg)}
    save = os.path.join(root, "save")
    paths = {
        "unsharded": save_checkpoint(save, 1, model, opt, trainer, config, sharded=False, keep=-1),
        "sharded": save_checkpoint(save, 1, model, opt, trainer, config, sharded=True, keep=-1),
    }
    del model, opt, tensors
    gc.collect()
    paths["olmo"] = os.path.join(root, "olmo")
    olmo_trainer = {"global_step": 1, "global_train_examples_seen_this_epoch": 0, "global_train_tokens_seen": 0,
                    "epoch": 0, "world_size": 1}  # fmt: skip
    write_original_dir(paths["unsharded"], paths["olmo"], cfg, olmo_trainer)
    paths["hf"] = os.path.join(root, "hf")
    write_hf_dir(paths["hf"], split_state(paths["unsharded"])[0], cfg)
    gc.collect()
    return paths, nbytes


# --- measuring ---------------------------------------------------------------------------------------------


def folder_files(path: str) -> list[str]:
    return sorted(os.path.join(d, f) for d, _, files in os.walk(path) for f in files)


def folder_bytes(path: str) -> int:
    return sum(os.path.getsize(f) for f in folder_files(path))


def raw_read_fresh(path: str) -> tuple[int, float]:
    """(bytes, seconds) of reading every file once into newly allocated memory, as a load must."""
    total = 0
    start = time.perf_counter()
    for name in folder_files(path):
        with open(name, "rb", buffering=0) as f:
            buffer = torch.empty(os.path.getsize(name), dtype=torch.uint8)
            view = memoryview(buffer.numpy())
            while n := f.readinto(view):
                view = view[n:]
                total += n
            del view, buffer
    return total, time.perf_counter() - start


def raw_read(path: str, buffer: bytearray) -> tuple[int, float]:
    """(bytes, seconds) of reading every file of the folder once with plain reads into one buffer."""
    view, total = memoryview(buffer), 0
    start = time.perf_counter()
    for name in folder_files(path):
        with open(name, "rb", buffering=0) as f:
            while n := f.readinto(view):
                total += n
    return total, time.perf_counter() - start


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _num(x: float) -> str:
    """Three significant digits at least (tiny test runs), thousands separated."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


def run_load_bench(b: LoadBench) -> dict:
    """Write every format once, then per format and process count: a raw read, then a load in fresh workers.
    Prints the table and returns its rows."""
    bad = [f for f in b.formats if f not in FORMATS]
    if bad:
        raise ConfigError(f"--formats: unknown {bad}; choose from {list(FORMATS)}")
    if not b.ranks or min(b.ranks) < 1 or b.repeats < 1:
        raise ConfigError("--ranks must be positive process counts and --repeats at least 1")
    cfg = model_config(b)
    if b.folder is not None:
        os.makedirs(b.folder, exist_ok=True)
    root = tempfile.mkdtemp(prefix="olmo_fn_load_bench_", dir=b.folder)
    try:
        start = time.perf_counter()
        paths, nbytes = write_checkpoints(root, cfg)
        written = time.perf_counter() - start
        sizes = {f: folder_bytes(paths[f]) for f in b.formats}
        model_json = json.dumps(dataclasses.asdict(cfg))
        bare = {n: launch(n, os.path.join(root, f"baseline{n}"), "baseline") for n in b.ranks}
        baseline = {n: max(r["rss_peak"] for r in reports) for n, reports in bare.items()}
        ru_baseline = {n: max(r["ru_maxrss"] for r in reports) for n, reports in bare.items()}
        buffer = bytearray(64 << 20)
        rows, threads = [], {}
        for fmt in b.formats:
            extra = ["--no-optim"] if fmt == "hf" else []
            for n in b.ranks:
                raws, fresh, runs = [], [], []
                for rep in range(b.repeats):
                    raws.append(raw_read(paths[fmt], buffer))  # warms the page cache for the load too
                    fresh.append(raw_read_fresh(paths[fmt]))
                    out = os.path.join(root, f"out_{fmt}_{n}_{rep}")
                    runs.append(launch(n, out, "load", "--path", paths[fmt], "--model", model_json, *extra))
                for reports in runs:
                    kinds = {r["kind"] for r in reports}
                    if kinds != {fmt}:
                        raise RuntimeError(f"{fmt} on {n}: the workers loaded {kinds}")
                threads[n] = runs[0][0]["threads"]
                seconds = min(max(r["seconds"] for r in reports) for reports in runs)
                raw_mbps = max(nb / s for nb, s in raws) / 1e6
                fresh_mbps = max(nb / s for nb, s in fresh) / 1e6
                peaks = [r["rss_peak"] for reports in runs for r in reports]
                totals = [sum(r["rss_peak"] for r in reports) for reports in runs]
                row = {
                    "format": fmt, "ranks": n, "bytes": sizes[fmt], "seconds": seconds,
                    "MBps": sizes[fmt] / seconds / 1e6, "raw_MBps": raw_mbps, "fresh_MBps": fresh_mbps,
                    "rss_before_per_rank": max(r["rss_before"] for reports in runs for r in reports),
                    "rss_peak_per_rank": max(peaks), "rss_peak_total": max(totals),
                    "ru_maxrss_per_rank": max(r["ru_maxrss"] for reports in runs for r in reports),
                    "memory_limit": MEMORY_FACTOR * sizes[fmt] + n * baseline[n],
                    "optimizer_loaded": all(r["optimizer_states"] > 0 for r in runs[0]) if fmt != "hf" else None,
                }  # fmt: skip
                row["memory_ok"] = row["rss_peak_total"] <= row["memory_limit"]
                row["speed_ratio"] = row["MBps"] / raw_mbps
                row["speed_ok"] = row["speed_ratio"] >= SPEED_FACTOR
                row["fresh_ratio"] = row["MBps"] / fresh_mbps
                rows.append(row)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    _report(b, cfg, nbytes, sizes, written, baseline, ru_baseline, threads, rows)
    return {"bytes": nbytes, "format_bytes": sizes, "baseline_rss": baseline, "rows": rows}


def _report(b, cfg, nbytes, sizes, written, baseline, ru_baseline, threads, rows) -> None:
    n_params = nbytes // 12
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; torch threads per rank: "
          + ", ".join(f"{n} rank(s): {t}" for n, t in threads.items()))  # fmt: skip
    print(f"shape: OLMo 2 (RMSNorm after, QK-norm, untied head), d_model {cfg.d_model}, {cfg.n_layers} layers, "
          f"{cfg.n_heads} heads, vocab {cfg.vocab_size}; {n_params:,} parameters")  # fmt: skip
    print(f"checkpoint size: {nbytes:,} bytes ({_mb(nbytes)}) of fp32 weights + exp_avg + exp_avg_sq; "
          f"all formats written in {written:.0f} s")  # fmt: skip
    print("folder bytes: " + ", ".join(f"{f} {s:,}" for f, s in sizes.items()) + " (hf: weights only)")
    print("bare process baseline (import torch + olmo_fn, process group, no model), peak RSS per rank: "
          + ", ".join(f"{n} rank(s): {_mb(v)}" for n, v in baseline.items()))  # fmt: skip
    print(f"raw read: every file of the folder once into a reused 64 MiB buffer, right before each load; the page "
          f"cache is warm (the files were just written / read). fresh: the same into newly allocated memory, "
          f"as a load must put the bytes (page faults included). Best of {b.repeats} load(s) each, highest memory.")  # fmt: skip
    print(f"targets: total peak RSS <= {MEMORY_FACTOR} x folder bytes + ranks x baseline; load MB/s >= "
          f"{SPEED_FACTOR} x raw read MB/s")  # fmt: skip
    head = (f"{'format':>9} {'ranks':>5} {'seconds':>8} {'MB/s':>7} {'raw MB/s':>9} {'RSS before':>11} "
            f"{'peak/rank':>10} {'peak total':>11} {'mem limit':>10} {'memory':>6} {'load/raw':>8} {'speed':>5} {'fresh MB/s':>10} {'load/fresh':>10}")  # fmt: skip
    print(head)
    for r in rows:
        print(f"{r['format']:>9} {r['ranks']:>5} {_num(r['seconds']):>8} {_num(r['MBps']):>7} {_num(r['raw_MBps']):>9} "
              f"{r['rss_before_per_rank'] / 1e6:>8,.0f} MB {r['rss_peak_per_rank'] / 1e6:>7,.0f} MB "
              f"{r['rss_peak_total'] / 1e6:>8,.0f} MB {r['memory_limit'] / 1e6:>7,.0f} MB "
              f"{'PASS' if r['memory_ok'] else 'FAIL':>6} {_num(r['speed_ratio']):>8} "
              f"{'PASS' if r['speed_ok'] else 'FAIL':>5} {_num(r['fresh_MBps']):>10} {_num(r['fresh_ratio']):>10}")  # fmt: skip
    print(
        "RSS before: peak RSS after building the model and optimizer, before the load (max over ranks); "
        "peak/rank: max over ranks after the load; peak total: sum over ranks."
    )
    print("Peak RSS is each process's own VmHWM: getrusage's ru_maxrss carries the launching process's peak "
          "over exec; it would read: baseline " + ", ".join(f"{n} rank(s) {_mb(v)}" for n, v in ru_baseline.items())
          + "; peak/rank " + ", ".join(f"{r['format']} x{r['ranks']} {_mb(r['ru_maxrss_per_rank'])}" for r in rows))  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:2] != ["worker"]:
        sys.exit(
            "usage: python -m olmo_fn.benchmarks.load worker MODE ... (the benchmark: tools/bench.py load)"
        )
    _worker_main(sys.argv[2:])
