"""Downstream evaluation: a task's requests scored by a model and reduced to the original's metric.

    tasks = [prepare_task("piqa", encode_batch), prepare_task("arc_easy", encode_batch)]
    results = evaluate_downstream(model, tasks, batch_size=32, pad_token_id=1)  # {"piqa": {"len_norm": ...}}

The metrics follow ai2-olmo 0.6's `ICLMetric` (its trainer's in-loop numbers): per continuation the sum S of
its tokens' log-probabilities; acc and f1 take S, len_norm S / characters (without the leading space), pmi_dc
S / S_dc (S_dc: the continuation after the domain-conditional prompt, log-softmaxed too), ce_loss
-S / characters and bpb -S / bytes x log2(e), both of the gold continuation and averaged over documents.
A document's prediction is the argmax of its continuations' values (stored as float32, as the original
stores them; ties go to the first); f1 is the binary F1 of predictions against labels with choice 0 (" yes")
positive. Keys: eval/downstream/{label}_{metric}, and eval/downstream_{metric}/{label}_{metric} for ce_loss
and bpb, as the original logs them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from olmo_fn.eval.registry import get_task
from olmo_fn.eval.scoring import score
from olmo_fn.eval.tasks import MODEL_CTX_LEN, Request, build_oe_requests, build_requests

LOG_2_OF_E = 1.44269504089
"""log2(e) as the original writes it."""


@dataclass
class PreparedTask:
    """A task's requests, built once with one tokenizer."""

    label: str
    metric: str
    requests: list[Request]

    @property
    def n_docs(self) -> int:
        return len({r.doc_id for r in self.requests})


def prepare_task(
    label: str,
    encode_batch: Callable[[list[str]], list[list[int]]],
    *,
    metric: str | None = None,
    limit: int | None = None,
    model_ctx_len: int = MODEL_CTX_LEN,
) -> PreparedTask:
    """The requests of task `label` (its first `limit` documents when given), tokenised with encode_batch."""
    task = get_task(label, metric)
    if task.oe_requests is not None:
        raw = task.oe_requests()
        if limit is not None:  # the first `limit` scored documents, before anything is tokenised
            keep = set(list(dict.fromkeys(r["doc_id"] for r in raw if r["doc_id"] < 1_000_000))[:limit])
            raw = [r for r in raw if r["doc_id"] in keep]
        requests = build_oe_requests(raw, task.metric, encode_batch, model_ctx_len)
    else:
        examples = list(task.examples())
        requests = build_requests(
            examples[:limit] if limit is not None else examples, encode_batch, model_ctx_len
        )
    return PreparedTask(label, task.metric, requests)


def metric_key(label: str, metric: str) -> str:
    """The original's metric name of a task."""
    if metric in ("ce_loss", "bpb"):
        return f"eval/downstream_{metric}/{label}_{metric}"
    return f"eval/downstream/{label}_{metric}"


def request_value(r: Request, s: float, s_dc: float | None, metric: str) -> float:
    """What the original stores for one continuation."""
    if metric in ("acc", "f1"):
        return s
    if metric == "pmi_dc":
        return _div(s, s_dc)
    if metric == "len_norm":
        return _div(s, r.cont_str_len)
    if metric == "ce_loss":
        return _div(-s, r.cont_str_len)
    if metric == "bpb":
        return _div(-s, r.cont_byte_len) * LOG_2_OF_E
    raise ValueError(metric)


def _div(a: float, b: float) -> float:
    """a / b as torch divides (x / 0 is +-inf, 0 / 0 is nan)."""
    return (
        float(np.float64(a) / np.float64(b))
        if b
        else (float("nan") if a == 0 else float(np.sign(a)) * float("inf"))
    )


def task_metric(metric: str, requests: Sequence[Request], values: Sequence[float]) -> float:
    """The original's reduction: first value per (doc, continuation) wins; a document with a gap in its
    continuation ids is skipped; ce_loss/bpb average the gold continuation's value, the others compare the
    argmax of the document's (float32) values with its label."""
    per_doc: dict[int, dict[int, float]] = {}
    labels: dict[int, int] = {}
    for r, v in zip(requests, values, strict=True):
        labels.setdefault(r.doc_id, r.label_id)
        per_doc.setdefault(r.doc_id, {}).setdefault(r.cont_id, v)
    kept, preds, golds = [], [], []
    for doc_id, conts in per_doc.items():
        if max(conts) >= len(conts):
            continue
        row = np.full(len(conts), -np.inf, dtype=np.float32)
        for cont_id, v in conts.items():
            row[cont_id] = v
        if metric in ("ce_loss", "bpb"):
            kept.append(float(row[0]))
            continue
        preds.append(int(np.argmax(row)))
        golds.append(labels[doc_id])
        kept.append(1.0 if preds[-1] == golds[-1] else 0.0)
    if metric == "f1":
        pred, gold = np.array(preds), np.array(golds)
        tp = int(((pred == 0) & (gold == 0)).sum())
        wrong = int(((pred == 0) != (gold == 0)).sum())
        return 2 * tp / (2 * tp + wrong) if tp + wrong else 0.0
    return sum(kept) / len(kept) if kept else float("nan")


def evaluate_downstream(
    model: nn.Module,
    tasks: Sequence[PreparedTask],
    *,
    batch_size: int,
    pad_token_id: int,
    dp_rank: int = 0,
    dp_size: int = 1,
    dp_group: dist.ProcessGroup | None = None,
    autocast_dtype: torch.dtype | None = None,
    progress: Callable[[int, int], None] | None = None,
    seq_multiple: int = 1,
) -> dict[str, dict[str, float]]:
    """task label -> {metric: value} for every task, all scored in one pass (shared batches); under tensor
    parallelism pass its degree as seq_multiple. progress(done, total) is called after each forward pass."""
    scores = score(
        model, request_items(tasks), batch_size=batch_size, pad_token_id=pad_token_id, dp_rank=dp_rank, dp_size=dp_size,
        dp_group=dp_group, autocast_dtype=autocast_dtype, progress=progress, seq_multiple=seq_multiple,
    )  # fmt: skip
    out, at = {}, 0
    dc_at = sum(len(t.requests) for t in tasks)
    for t in tasks:
        s = scores[at : at + len(t.requests)]
        at += len(t.requests)
        s_dc: list[float | None] = [None] * len(s)
        if t.metric == "pmi_dc":
            s_dc = scores[dc_at : dc_at + len(t.requests)]
            dc_at += len(t.requests)
        values = [request_value(r, a, b, t.metric) for r, a, b in zip(t.requests, s, s_dc, strict=True)]
        out[t.label] = {t.metric: task_metric(t.metric, t.requests, values)}
    return out


def request_items(tasks: Sequence[PreparedTask]) -> list[tuple]:
    """The scoring items of `tasks`: every request, then the domain-conditional ones of pmi_dc tasks."""
    items = [(r.query, r.ctx_len - 1, r.continuation) for t in tasks for r in t.requests]
    items += [
        (r.dc_query, r.dc_len - 1, r.continuation) for t in tasks if t.metric == "pmi_dc" for r in t.requests
    ]
    return items
