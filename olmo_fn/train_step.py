"""One optimizer step: micro-batch gradient accumulation, gradient clipping, learning rate, AdamW.

The loss of every micro-batch is divided by one denominator counted over the whole global batch (all
micro-batches and all data-parallel ranks), so the update is the same however the batch is split.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from olmo_fn.errors import TrainingError
from olmo_fn.loss import IGNORE_INDEX, Normalization, loss_denominator, shift_labels
from olmo_fn.model.layers import document_ids
from olmo_fn.spikes import SpikeWindow


@dataclass
class StepMetrics:
    """What one step measured over the global batch: loss sums and token counts, the pre-clip grad norm."""

    ce_sum: float
    z_sum: float
    grad_norm: float
    lr: float
    label_tokens: int
    """Positions with a target."""
    batch_tokens: int
    """Every position of the batch (B x T), the original's loss denominator."""
    skipped: str | None = None
    """Why the optimizer step was skipped (a spike or a non-finite step, see olmo_fn.spikes); None = applied."""

    @property
    def ce_loss(self) -> float:
        """Mean cross-entropy per label token."""
        return self.ce_sum / max(self.label_tokens, 1)

    @property
    def z_loss(self) -> float:
        """Mean z-loss per label token."""
        return self.z_sum / max(self.label_tokens, 1)


def batch_labels(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Shifted targets of a collated batch, honouring its label, attention and instance masks."""
    return shift_labels(
        batch["input_ids"], batch.get("label_mask"), batch.get("attention_mask"), batch.get("instance_mask")
    )


def split_micro_batches(batch: dict, size: int) -> list[dict]:
    """Cut the tensors of a batch along dim 0 into micro-batches of `size` rows (other fields dropped)."""
    rows = batch["input_ids"].shape[0]
    keys = [k for k, v in batch.items() if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == rows]
    return [{k: batch[k][i : i + size] for k in keys} for i in range(0, rows, size)]


def _all_reduce_sum(values: torch.Tensor, group: dist.ProcessGroup | None) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM, group=group)
    return values


def _all_reduce_plain_grads(params: list[nn.Parameter], group: dist.ProcessGroup | None) -> None:
    """Plain data parallelism: sum gradients over ranks (the loss is already divided by the global count).

    Sharded parameters (DTensors under FSDP/TP) reduce their own gradients and are skipped.
    """
    from torch.distributed.tensor import DTensor

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) == 1:
        return
    for p in params:
        if p.grad is not None and not isinstance(p.grad, DTensor):
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM, group=group)


def grad_norm_and_clip(params: list[nn.Parameter], max_norm: float | None) -> torch.Tensor:
    """Global L2 norm of the gradients (plain tensors and DTensors on any meshes); clip them in place."""
    from torch.distributed.tensor import DTensor

    groups: dict[object, list[nn.Parameter]] = {}
    for p in params:
        if p.grad is not None:
            groups.setdefault(p.grad.device_mesh if isinstance(p.grad, DTensor) else None, []).append(p)
    squares = []
    for mesh, group in groups.items():
        norm = torch.nn.utils.get_total_norm([p.grad for p in group], 2.0, foreach=True)
        if mesh is not None:
            norm = norm.full_tensor()
        squares.append(norm.float().square())
    total = torch.stack(squares).sum().sqrt() if squares else torch.zeros(())
    if max_norm is not None:  # per group: one foreach op may not mix plain tensors and DTensors
        for group in groups.values():
            torch.nn.utils.clip_grads_with_norm_(group, max_norm, total, foreach=True)
    return total


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    *,
    lr: float,
    microbatch_size: int,
    max_grad_norm: float | None,
    z_loss_multiplier: float = 0.0,
    normalization: Normalization = "batch_tokens",
    autocast_dtype: torch.dtype | None = None,
    dp_group: dist.ProcessGroup | None = None,
    spikes: SpikeWindow | None = None,
    document_eos: int | None = None,
) -> StepMetrics:
    """Accumulate gradients over the micro-batches of this rank's batch, clip, set the LR, step AdamW.

    document_eos: mask attention between the documents packed into an instance, a new one starting after
    each of these (EOS) tokens (data.generate_doc_lengths).

    Without `spikes`, raises TrainingError, before the optimizer moves, if the loss or the gradient norm is
    not finite. With it, a non-finite or spiking step is recorded and skipped instead (parameters and
    optimizer state untouched; StepMetrics.skipped says why), see olmo_fn.spikes.
    """
    device = next(model.parameters()).device
    micro = [
        {k: v.to(device, non_blocking=True) for k, v in m.items()}
        for m in split_micro_batches(batch, microbatch_size)
    ]
    labels = [batch_labels(m) for m in micro]
    # Counts, loss sums and the grad norm stay on the device until one transfer before the optimizer step.
    counts = torch.stack(
        [
            sum(loss_denominator(lab, normalization) for lab in labels),
            sum((lab != IGNORE_INDEX).sum() for lab in labels),
            torch.full((), sum(lab.numel() for lab in labels), device=device),
        ]
    ).double()
    counts = _all_reduce_sum(counts, dp_group)
    denominator = counts[0].clamp(min=1.0).float()
    sums = torch.zeros(2, dtype=torch.float32, device=device)
    for m, lab in zip(micro, labels):
        autocast = torch.autocast(device.type, autocast_dtype) if autocast_dtype else contextlib.nullcontext()
        with autocast:
            doc_ids = None if document_eos is None else document_ids(m["input_ids"], document_eos)
            out = model(
                m["input_ids"],
                attention_mask=m.get("attention_mask"),
                labels=lab,
                z_loss_multiplier=z_loss_multiplier,
                doc_ids=doc_ids,
            )
        (out.total / denominator).backward()
        sums += torch.stack([out.ce.detach(), out.z.detach()])
    sums = _all_reduce_sum(sums, dp_group)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    _all_reduce_plain_grads(params, dp_group)
    norm = grad_norm_and_clip(params, max_grad_norm)
    ce, z, grad_norm, labelled, batch_tokens = torch.cat(
        [sums.double(), norm.double()[None], counts[1:]]
    ).tolist()
    labelled, batch_tokens = int(labelled), int(batch_tokens)
    skipped = None
    if spikes is not None:  # the global values, the same on every rank: every rank decides the same
        skipped = spikes.judge(ce / max(labelled, 1), z / max(labelled, 1), grad_norm)
    elif not (math.isfinite(ce) and math.isfinite(z) and math.isfinite(grad_norm)):
        optimizer.zero_grad(set_to_none=True)
        raise TrainingError(
            f"non-finite training step (loss sum {ce}, z-loss sum {z}, grad norm {grad_norm}); stopping without "
            "applying it. Lower the learning rate, enable z-loss or clipping, or resume from the last checkpoint "
            "(--optimizer.skip_spikes skips such steps instead)"
        )
    for group in optimizer.param_groups:
        group["lr"] = lr  # also when skipped: the schedule goes on, and the logged rate is the step's
    if skipped is None:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepMetrics(ce, z, grad_norm, lr, labelled, batch_tokens, skipped)
