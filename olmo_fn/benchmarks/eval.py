"""Downstream evaluation speed: olmo_fn's evaluator against transformers scoring the same requests, one by one
and in batches, on the same tiny model (GPT-NeoX vocabulary, random weights), in one process.

The peers do what a straightforward harness does: the one-by-one peer reads each request's query alone; the
batched peer reads the requests in task order, `batch_size` at a time, right-padded; both take log-softmax
over the whole padded vocabulary at every position and gather the continuation's tokens. olmo_fn's evaluator
reads each distinct row once (a row that is a prefix of another, e.g. the shared context of single-token
choices, is read with it), sorts rows by length and makes logits only where a token is scored. All three give
the same sums (checked). A third peer batches the requests sorted by length (less padding).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from olmo_fn.benchmarks.load import cpu_model
from olmo_fn.config import ModelConfig
from olmo_fn.eval.downstream import evaluate_downstream, prepare_task
from olmo_fn.eval.evaluators import tokenizer_encoder
from olmo_fn.eval.scoring import score
from olmo_fn.model import Transformer, init_weights


@dataclass
class EvalBench:
    """Tasks and model of the evaluation benchmark."""

    tasks: str = "piqa,hellaswag,winogrande,arc_easy,mmlu_stem_mc_5shot"
    """Comma-separated task labels (a mix of short, long, multiple-choice-letter and winogrande requests)."""
    limit: int = 20
    """Documents per task."""
    batch_size: int = 16
    """Rows per forward pass (olmo_fn and the batched peer)."""
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    mlp_hidden: int = 256
    tokenizer: str = "tokenizers/allenai_gpt-neox-olmo-dolma-v1_5.json"
    seed: int = 0


def _model(b: EvalBench) -> Transformer:
    cfg = ModelConfig(
        d_model=b.d_model, n_heads=b.n_heads, n_layers=b.n_layers, mlp_hidden_size=b.mlp_hidden,
        vocab_size=50280, embedding_size=50304, eos_token_id=50279, pad_token_id=1, max_sequence_length=2048,
        layer_norm_type="rms", layer_norm_with_affine=True, attention_layer_norm=True, norm_after=True,
        rope_theta=500_000.0,
    )  # fmt: skip
    model = Transformer(cfg).eval()
    init_weights(model, cfg, seed=b.seed)
    return model


@torch.no_grad()
def _hf_one_by_one(hf, requests) -> list[float]:
    out = []
    for r in requests:
        lp = hf(torch.tensor([list(r.query)])).logits[0].float().log_softmax(-1)
        first = r.ctx_len - 1
        positions = torch.arange(first, first + len(r.continuation))
        out.append(float(lp[positions, torch.tensor(r.continuation)].double().sum()))
    return out


@torch.no_grad()
def _hf_batched(hf, requests, batch_size: int, pad_id: int) -> list[float]:
    out = []
    for start in range(0, len(requests), batch_size):
        batch = requests[start : start + batch_size]
        length = max(len(r.query) for r in batch)
        ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
        for i, r in enumerate(batch):
            ids[i, : len(r.query)] = torch.tensor(r.query)
        lp = hf(ids).logits.float().log_softmax(-1)
        for i, r in enumerate(batch):
            positions = torch.arange(r.ctx_len - 1, r.ctx_len - 1 + len(r.continuation))
            out.append(float(lp[i, positions, torch.tensor(r.continuation)].double().sum()))
    return out


def run_eval_bench(b: EvalBench) -> dict[str, float]:
    from transformers import Olmo2ForCausalLM

    from olmo_fn.checkpoint.hf import hf_config, to_hf_state_dict

    model = _model(b)
    hf = Olmo2ForCausalLM(hf_config(model.config)).eval()
    hf.load_state_dict(to_hf_state_dict(model.state_dict(), model.config))
    encode = tokenizer_encoder(b.tokenizer, model.config.vocab_size, what="--tokenizer")
    tasks = [
        prepare_task(label.strip(), encode, limit=b.limit) for label in b.tasks.split(",") if label.strip()
    ]
    requests = [r for t in tasks for r in t.requests]
    tokens = sum(len(r.query) for r in requests)
    items = [(r.query, r.ctx_len - 1, r.continuation) for r in requests]
    timings: dict[str, float] = {}
    start = time.perf_counter()
    evaluate_downstream(model, tasks, batch_size=b.batch_size, pad_token_id=1)
    timings["olmo_fn evaluator"] = time.perf_counter() - start
    ours = score(model, items, batch_size=b.batch_size, pad_token_id=1)
    start = time.perf_counter()
    batched = _hf_batched(hf, requests, b.batch_size, 1)
    timings["transformers, batched"] = time.perf_counter() - start
    order = sorted(range(len(requests)), key=lambda i: -len(requests[i].query))
    start = time.perf_counter()
    by_length = _hf_batched(hf, [requests[i] for i in order], b.batch_size, 1)
    timings["transformers, batched, sorted"] = time.perf_counter() - start
    unsorted = [0.0] * len(requests)
    for i, v in zip(order, by_length, strict=True):
        unsorted[i] = v
    start = time.perf_counter()
    alone = _hf_one_by_one(hf, requests)
    timings["transformers, one by one"] = time.perf_counter() - start
    diff = max(
        max(abs(a - c), abs(a - d), abs(a - e))
        for a, c, d, e in zip(ours, batched, alone, unsorted, strict=True)
    )
    print(f"CPU: {cpu_model()}, {torch.get_num_threads()} threads; model d_model {b.d_model}, {b.n_layers} "
          f"layers, vocabulary 50280 (padded 50304); batch {b.batch_size}")  # fmt: skip
    print(
        f"{len(tasks)} tasks ({b.tasks}), {b.limit} documents each: {len(requests)} requests, {tokens} query tokens"
    )
    for name, seconds in timings.items():
        print(
            f"{name:>26}: {len(requests) / seconds:9.1f} requests/s {tokens / seconds:11,.0f} tokens/s ({seconds:.2f} s)"
        )
    mine = timings["olmo_fn evaluator"]
    print(f"olmo_fn vs one by one: {timings['transformers, one by one'] / mine:.1f}x (target >= 3x); "
          f"vs batched: {timings['transformers, batched'] / mine:.1f}x, vs batched sorted by length: "
          f"{timings['transformers, batched, sorted'] / mine:.1f}x (target >= 1.2x)")  # fmt: skip
    print(f"largest difference of a request's log-probability between them: {diff:.2e}")
    return {name: len(requests) / s for name, s in timings.items()} | {"max_abs_diff": diff}
