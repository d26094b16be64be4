"""Score a checkpoint on the original OLMo's downstream tasks, as its in-loop evaluator scores them.

    python tools/evaluate.py CHECKPOINT --tasks piqa,arc_easy,hellaswag --limit 200
    python tools/evaluate.py CHECKPOINT --tasks mmlu_stem_mc_5shot,arc_challenge:pmi_dc --limit 100 --json
    torchrun --nproc_per_node=4 tools/evaluate.py CHECKPOINT --tasks piqa,copa --limit 50 --tp 2
    python tools/evaluate.py --list-tasks

CHECKPOINT is any checkpoint olmo_fn reads (native, sharded, original OLMo, Hugging Face folder; local or a
URL). The tokenizer defaults to the one the checkpoint names (its config's tokenizer.identifier, or a Hugging
Face folder's tokenizer.json). A table goes to stdout, or with --json one JSON object {task: {metric: value}};
the progress bar and diagnostics go to stderr.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Literal

import torch
import tyro

from olmo_fn.errors import ConfigError
from olmo_fn.launch import run_tool


def default_tokenizer(checkpoint: str) -> str:
    """The tokenizer a checkpoint names: its config's tokenizer.identifier, or a Hugging Face folder's
    tokenizer.json."""
    from olmo_fn.checkpoint import storage
    from olmo_fn.checkpoint.load import config_of_checkpoint, detect_kind

    if detect_kind(checkpoint.rstrip("/")) == "hf":
        path = storage.join(checkpoint.rstrip("/"), "tokenizer.json")
        if storage.exists(path):
            return path
    else:
        identifier = ((config_of_checkpoint(checkpoint) or {}).get("tokenizer") or {}).get("identifier")
        if identifier:
            return identifier
    raise ConfigError(f"{checkpoint}: the checkpoint names no tokenizer; pass --tokenizer TOKENIZER_JSON")


def load_model(checkpoint: str, tp: int, precision: str):
    """The checkpoint's model on this process's device, sharded over the torchrun world (FSDP, or TP x FSDP)."""
    from olmo_fn.checkpoint import load_checkpoint, model_config_of_checkpoint
    from olmo_fn.config import ParallelConfig
    from olmo_fn.dist import init_distributed
    from olmo_fn.model import Transformer
    from olmo_fn.parallel import parallelize

    cfg = model_config_of_checkpoint(checkpoint)
    parallel = ParallelConfig(tp=tp)
    env = init_distributed(parallel)
    with torch.device("meta"):
        model = Transformer(cfg)
    parallelize(model, parallel, env.mesh, compile=False, device_type=env.device.type, precision=precision)
    model.to_empty(device=env.device)
    load_checkpoint(checkpoint, model, None)
    return model.eval(), env


def print_table(results: dict[str, dict[str, float]], tasks, seconds: float, file=sys.stdout) -> None:
    rows = [(t.label, m, v, t.n_docs, len(t.requests)) for t in tasks for m, v in results[t.label].items()]
    width = max([len("task"), *(len(r[0]) for r in rows)])
    print(f"{'task':<{width}}  {'metric':<8}  {'value':>8}  {'docs':>6}  {'requests':>8}", file=file)
    for label, metric, value, docs, requests in rows:
        print(f"{label:<{width}}  {metric:<8}  {value:>8.4f}  {docs:>6}  {requests:>8}", file=file)
    n = sum(len(t.requests) for t in tasks)
    print(f"{n} requests in {seconds:.1f} s ({n / max(seconds, 1e-9):.1f} requests/s)", file=sys.stderr)


def main(
    checkpoint: Annotated[str | None, tyro.conf.Positional, tyro.conf.arg(metavar="CHECKPOINT")] = None,
    tasks: str = "",
    tokenizer: str | None = None,
    limit: int | None = None,
    batch_size: int = 32,
    json_output: Annotated[bool, tyro.conf.arg(name="json")] = False,
    list_tasks: bool = False,
    tp: int = 1,
    precision: Literal["fp32", "amp_bf16"] = "fp32",
    model_ctx_len: int = 2048,
) -> None:
    """Score CHECKPOINT on downstream tasks.

    Args:
        checkpoint: Checkpoint folder or URL: olmo_fn native/sharded, original OLMo, or a Hugging Face folder.
        tasks: Comma-separated task labels as in the original's configs (piqa,hellaswag,mmlu_stem_var,...);
            TASK:METRIC scores a task with another metric (acc, len_norm, pmi_dc, ce_loss, bpb, f1).
        tokenizer: A tokenizers JSON file (or a packaged name like tokenizers/allenai_dolma2.json); default:
            the one the checkpoint names.
        limit: Score only the first N documents of each task.
        batch_size: Rows per forward pass on each device.
        json_output: Print one JSON object {task: {metric: value}} on stdout instead of the table.
        list_tasks: Print every known task label and exit.
        tp: Tensor-parallel degree under torchrun (the rest of the world shards with FSDP).
        precision: fp32, or bf16 autocast on GPUs (amp_bf16).
        model_ctx_len: Left-truncate requests to this many tokens (the original evaluator's 2048).
    """
    from olmo_fn.eval.downstream import evaluate_downstream, prepare_task
    from olmo_fn.eval.evaluators import tokenizer_encoder
    from olmo_fn.eval.registry import known_tasks
    from olmo_fn.train import autocast_dtype

    if list_tasks:
        print("\n".join(known_tasks()))
        return
    if checkpoint is None:
        raise ConfigError("no checkpoint: give CHECKPOINT (a folder or URL) and --tasks piqa,arc_easy,...")
    labels = [t.strip() for t in tasks.split(",") if t.strip()]
    if not labels:
        raise ConfigError("--tasks: name at least one task, e.g. --tasks piqa,arc_easy (see --list-tasks)")
    from olmo_fn.checkpoint import model_config_of_checkpoint

    vocab = model_config_of_checkpoint(checkpoint).vocab_size
    identifier = tokenizer or default_tokenizer(checkpoint)
    encode = tokenizer_encoder(
        identifier, vocab, what="--tokenizer" if tokenizer else f"tokenizer {identifier}"
    )
    prepared = []
    for spec in labels:
        label, _, metric = spec.partition(":")
        prepared.append(
            prepare_task(label, encode, metric=metric or None, limit=limit, model_ctx_len=model_ctx_len)
        )
    model, env = load_model(checkpoint, tp, precision)
    bar = None
    if env.rank == 0:
        from tqdm import tqdm

        bar = tqdm(desc="evaluating", unit="batch", file=sys.stderr, dynamic_ncols=True)

    def show(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    start = time.perf_counter()
    results = evaluate_downstream(
        model, prepared, batch_size=batch_size, pad_token_id=model.config.pad_token_id, dp_rank=env.dp_rank,
        dp_size=env.dp_size, dp_group=env.dp_group, autocast_dtype=autocast_dtype(precision, env.device),
        progress=show if bar is not None else None, seq_multiple=env.tp_size,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()
    if env.rank == 0:
        if json_output:
            print(json.dumps(results))
        else:
            print_table(results, prepared, seconds)
    from olmo_fn.dist import shutdown_distributed

    shutdown_distributed()


if __name__ == "__main__":
    run_tool(main)
