"""Benchmarks, one subcommand each (`python tools/bench.py data --help`).

train: olmo_fn's train step against transformers' Olmo2ForCausalLM with torch's AdamW (eager and compiled), at
the OLMo 2 bench shape or (--case tiny) the tiny recipe's; each variant in its own fresh process, alternating
over --repeats rounds, with the CPU's load and MFU against the best matmul probe of the run.
data: tokens/s the training loader delivers (0 and 2 workers) beside the raw byte-range read rate of the
same instances and beside what the tiny model's train step consumes.
decode: olmo_fn's generate against transformers' generate (eager and compiled) beside the matrix-vector roofline,
batch 1, at the same two shapes (--case); each variant and the roofline in its own fresh process, alternating.
load: loading ~1 GB of weights + AdamW state from every checkpoint format on 1, 2 and 4 gloo processes (FSDP2):
seconds, MB/s against a raw read, and peak memory per rank.
eval: olmo_fn's downstream evaluator against transformers scoring the same requests one by one and batched.
chaos: a training run SIGKILLed at seeded random moments and resumed each time, against the run never killed.
gpu: olmo_fn's logits, training and decode speed on one GPU, in under 8 minutes on an H200.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from typing import Annotated

import numpy as np
import torch
import tyro

from olmo_fn.benchmarks.chaos import ChaosBench, run_chaos_bench
from olmo_fn.benchmarks.checkpoint import CheckpointBench, run_checkpoint_bench
from olmo_fn.benchmarks.decode import DecodeBench, run_decode_bench
from olmo_fn.benchmarks.eval import EvalBench, run_eval_bench
from olmo_fn.benchmarks.gpu_check import GpuCheck, run_gpu_check
from olmo_fn.benchmarks.load import LoadBench, run_load_bench
from olmo_fn.benchmarks.train import TrainBench, run_train_bench
from olmo_fn.config import DataConfig
from olmo_fn.data.files import read_range
from olmo_fn.data.loader import build_train_loader
from olmo_fn.data.memmap import TokenDataset, build_token_dataset
from olmo_fn.data.order import build_global_indices
from olmo_fn.errors import ConfigError, OlmoFnError
from olmo_fn.launch import quiet_third_party


def raw_read_rate(dataset: TokenDataset, ids: np.ndarray) -> float:
    """Tokens/s of reading the instances' bytes with one byte-range read each (offsets precomputed)."""
    nbytes = dataset.seq_len * dataset.dtype.itemsize
    file_no = np.searchsorted(dataset.offsets, ids, side="right") - 1
    offsets = ((ids - dataset.offsets[file_no]) * nbytes).tolist()
    paths = [dataset.files[k].path for k in file_no.tolist()]
    fds = {p: os.open(p, os.O_RDONLY) for p in set(paths) if "://" not in p}
    start = time.perf_counter()
    for path, offset in zip(paths, offsets, strict=True):
        data = os.pread(fds[path], nbytes, offset) if path in fds else read_range(path, offset, nbytes)
        np.frombuffer(data, dataset.dtype)
    elapsed = time.perf_counter() - start
    for fd in fds.values():
        os.close(fd)
    return len(ids) * dataset.seq_len / elapsed


def loader_rate(dataset: TokenDataset, cfg: DataConfig, batch_size: int, batches: int) -> tuple[float, float]:
    """(steady tokens/s after the first batch, tokens/s including start-up) of the training loader."""
    loader = build_train_loader(dataset, cfg, global_batch_size=batch_size, seed=0)
    start = time.perf_counter()
    first, seen = 0.0, 0
    while seen < batches:  # as many epochs as it takes
        for _ in loader:
            seen += 1
            if seen == 1:
                first = time.perf_counter()
            if seen == batches:
                break
    end = time.perf_counter()
    tokens = batch_size * dataset.seq_len
    return tokens * (batches - 1) / (end - first), tokens * batches / (end - start)


def train_step_rate(batch_size: int, seq_len: int, steps: int) -> float:
    """Tokens/s one forward + backward + AdamW step of the tiny model consumes (after a warm-up step)."""
    from olmo_fn.loss import shift_labels
    from olmo_fn.model import Transformer, init_weights
    from olmo_fn.model.presets import olmo_tiny

    cfg = olmo_tiny()
    model = Transformer(cfg)
    init_weights(model, cfg, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(2, cfg.vocab_size, (batch_size, seq_len))
    labels = shift_labels(ids)

    def step() -> None:
        out = model(ids, labels=labels)
        (out.total / labels.numel()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size * seq_len / (time.perf_counter() - start)


def data(
    paths: list[str] | None = None,
    seq_len: int | None = None,
    memmap_dtype: str = "uint16",
    batch_size: int = 16,
    batches: int = 400,
    train_steps: int = 3,
) -> dict[str, float]:
    """Loader tokens/s (0, 2 and 2 persistent workers) vs the raw read rate and the tiny model's train step.

    Args:
        paths: Token files to read; default: the embedded default corpus' training files.
        seq_len: Instance length; default: the tiny model's max_sequence_length.
        memmap_dtype: Integer type of the token files.
        batch_size: Instances per batch (the tiny experiment's global_train_batch_size; its train step uses
            this batch too).
        batches: Batches the loader delivers per measurement (over several epochs if needed).
        train_steps: Timed train steps (after one warm-up step).
    """
    from olmo_fn.model.presets import olmo_tiny

    warnings.filterwarnings("ignore", message=".*set_vital.*")
    seq_len = seq_len or olmo_tiny().max_sequence_length
    if paths is None:
        from olmo_fn.data.corpus import default_corpus

        paths = default_corpus().train_paths
    base = DataConfig(paths=paths, memmap_dtype=memmap_dtype)
    dataset = build_token_dataset(base, seq_len=seq_len)
    per_epoch = len(dataset) // batch_size
    if per_epoch == 0:
        raise ConfigError(f"the data holds {len(dataset)} instances, fewer than one batch of {batch_size}")
    epochs = [
        build_global_indices(len(dataset), seed=0, epoch=e)[: per_epoch * batch_size]
        for e in range(-(-batches // per_epoch))
    ]
    ids = np.concatenate(epochs)[: batches * batch_size]
    raw = max(raw_read_rate(dataset, ids) for _ in range(3))
    results = {"raw read": raw}
    for workers, persistent in ((0, False), (2, False), (2, True)):
        cfg = DataConfig(
            paths=paths, memmap_dtype=memmap_dtype, num_workers=workers, persistent_workers=persistent
        )
        runs = [
            loader_rate(dataset, cfg, batch_size, batches) for _ in range(3)
        ]  # best of 3, as the raw read
        name = f"loader, {workers} workers" + (", persistent" if persistent else "")
        results[name] = max(steady for steady, _ in runs)
        results[f"{name}, incl. start-up"] = max(with_startup for _, with_startup in runs)
    step = train_step_rate(batch_size, seq_len, train_steps)
    results["tiny model train step"] = step
    print(f"{len(dataset)} instances of {seq_len} tokens, batches of {batch_size}, {batches} batches per run")
    for name, rate in results.items():
        print(f"{name:>46}: {rate:14,.0f} tokens/s")
    for name in ("loader, 0 workers", "loader, 2 workers", "loader, 2 workers, persistent"):
        rate = results[name]
        print(
            f"{name.removeprefix('loader, ')}: {rate / step:,.0f}x the train step (target >= 50x), {rate / raw:.2f} of the raw read rate (target >= 0.25)"
        )
    return results


def train(bench: Annotated[TrainBench, tyro.conf.OmitArgPrefixes]) -> dict:
    """olmo_fn's train step against transformers' Olmo2ForCausalLM + torch AdamW, eager and compiled."""
    return run_train_bench(bench)


def checkpoint(bench: Annotated[CheckpointBench, tyro.conf.OmitArgPrefixes]) -> dict:
    """Save/load ~1 GB of fp32 weights + AdamW state (native and sharded) beside a raw write/read."""
    return run_checkpoint_bench(bench)


def load(bench: Annotated[LoadBench, tyro.conf.OmitArgPrefixes]) -> dict:
    """Load ~1 GB of weights + AdamW state (native, sharded, original OLMo, HF) on 1, 2, 4 gloo processes."""
    return run_load_bench(bench)


def decode(bench: Annotated[DecodeBench, tyro.conf.OmitArgPrefixes]) -> dict:
    """Greedy decode tokens/s: olmo_fn's generate against transformers' generate, beside the roofline."""
    return run_decode_bench(bench)


def eval(bench: Annotated[EvalBench, tyro.conf.OmitArgPrefixes]) -> dict:  # noqa: A001 (the subcommand's name)
    """Downstream requests/s and tokens/s: olmo_fn's evaluator against transformers one by one and batched."""
    return run_eval_bench(bench)


def chaos(bench: Annotated[ChaosBench, tyro.conf.OmitArgPrefixes]) -> dict:
    """SIGKILL a training run at random moments, resume it each time, compare with the run never killed."""
    return run_chaos_bench(bench)


def gpu(check: Annotated[GpuCheck, tyro.conf.OmitArgPrefixes]) -> dict:
    """Check that olmo_fn is right and fast on one GPU (an H200 in under 8 minutes): its bf16 logits against
    transformers', training tokens/s and MFU (also with float8 and activation checkpointing), decode tokens/s.
    `--device cpu --tiny` runs every row at toy size to try the command without a GPU."""
    figures = run_gpu_check(check)
    if figures["failed"]:
        sys.exit(f"error: {len(figures['failed'])} rows of the check failed (tracebacks above): "
                 + "; ".join(figures["failed"]))  # fmt: skip
    return figures


def main() -> None:
    quiet_third_party()  # also whole-sentence --help for every subcommand, as the other tools
    try:
        tyro.extras.subcommand_cli_from_dict(
            {
                "data": data,
                "train": train,
                "checkpoint": checkpoint,
                "decode": decode,
                "load": load,
                "eval": eval,
                "chaos": chaos,
                "gpu": gpu,
            }
        )
    except OlmoFnError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
