"""Language-model evaluation on held-out token files: mean cross-entropy per label token and perplexity."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import nn

from olmo_fn.config import DataConfig, EvalConfig, ModelConfig
from olmo_fn.data.memmap import TokenDataset, build_token_dataset
from olmo_fn.loss import IGNORE_INDEX, shift_labels


def build_eval_datasets(
    sets: EvalConfig | dict[str, list[str]], data: DataConfig, model: ModelConfig
) -> dict[str, TokenDataset]:
    """One token dataset per evaluation label (`sets`: label -> token files, or an EvalConfig's datasets),
    read like the training data (same dtype and length)."""
    out = {}
    for label, paths in sorted((sets.datasets if isinstance(sets, EvalConfig) else sets).items()):
        eval_data = DataConfig(paths=list(paths), memmap_dtype=data.memmap_dtype)
        out[label] = build_token_dataset(
            eval_data,
            seq_len=model.max_sequence_length,
            vocab_size=model.vocab_size,
            pad_token_id=model.pad_token_id,
        )
    return out


@torch.no_grad()
def evaluate_lm(
    model: nn.Module,
    dataset: TokenDataset,
    *,
    batch_size: int,
    max_batches: int = -1,
    rank: int = 0,
    world_size: int = 1,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """CrossEntropyLoss (mean over label tokens) and Perplexity of `model` on `dataset`, over all ranks.

    Instances are taken in file order; rank r evaluates instances r, r + world_size, ... of each batch
    group, so the result does not depend on the number of ranks. Every rank runs the same number of forward
    passes (FSDP and TP gather inside them): a rank left without rows in the last group runs a dummy row
    whose loss is not counted.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    sums = torch.zeros(2, dtype=torch.float64, device=device)
    group = batch_size * world_size
    n_batches = -(-len(dataset) // group)
    if max_batches >= 0:
        n_batches = min(n_batches, max_batches)
    for b in range(n_batches):
        indices = range(b * group + rank, min((b + 1) * group, len(dataset)), world_size)
        input_ids = torch.stack([dataset[i]["input_ids"] for i in indices or [0]]).to(device)
        labels = shift_labels(input_ids)
        if not indices:  # the dummy row: same shapes and collectives, nothing counted
            labels.fill_(IGNORE_INDEX)
        autocast = torch.autocast(device.type, autocast_dtype, enabled=autocast_dtype is not None)
        with autocast:
            out = model(input_ids, labels=labels)
        sums += torch.stack([out.ce.double(), (labels != IGNORE_INDEX).sum().double()])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums)
    model.train(was_training)
    ce = (sums[0] / sums[1].clamp(min=1)).item()
    return {"CrossEntropyLoss": ce, "Perplexity": math.exp(min(ce, 50.0))}
