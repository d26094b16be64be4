"""The output head under tensor parallelism: logits and loss when the head weight is a DTensor.

`parallel.apply_tp` turns the model's LMHead into a VocabParallelLMHead (same parameters, this forward), so
the model's own head stays plain math.

`parallel.apply_tp` leaves the head weight split over the vocabulary (Shard(0), loss parallel) or whole on
every TP rank (Replicate). With a split weight each rank makes the logits of its slice of the vocabulary and
the loss is assembled across the TP ranks (max, sum of exponentials and the target logit are all-reduced),
so full logits never exist; the gradients are made chunk by chunk in forward, as in `loss.chunked_lm_loss`.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor, Replicate, Shard

from olmo_fn.loss import (
    IGNORE_INDEX,
    LMLoss,
    _scored_positions,
    chunked_lm_loss,
    logit_grad,
    saved_grads_scaled,
    token_logprobs,
)
from olmo_fn.model.transformer import LMHead


def tp_head(
    h: torch.Tensor,
    weight: DTensor,
    labels: torch.Tensor | None,
    z_loss_multiplier: float = 0.0,
    chunk_size: int = 1024,
    per_token: bool = False,
) -> torch.Tensor | LMLoss:
    """Logits ([B, T, V], gathered), the loss sums, or (per_token) the labels' log-probabilities of a
    TP-parallel head; h may be a sequence-sharded DTensor."""
    if isinstance(h, DTensor):  # sequence parallel: gather the sequence (backward keeps this rank's slice)
        h = h.redistribute(placements=[Replicate()]).to_local()
    local_weight = weight.to_local()
    if weight.placements[0].is_replicate():  # no loss parallel: every TP rank computes the whole head
        if labels is None:
            return h @ local_weight.t()
        if per_token:
            return token_logprobs(h, local_weight, labels, chunk_size)
        return chunked_lm_loss(h, local_weight, labels, z_loss_multiplier, chunk_size)
    mesh = weight.device_mesh
    if labels is None:
        logits = DTensor.from_local(h @ local_weight.t(), mesh, [Shard(-1)])
        return logits.full_tensor()
    offset = mesh.get_local_rank() * local_weight.shape[0]
    if per_token:
        return _token_logprobs(h, local_weight, labels, chunk_size, offset, mesh.get_group())
    flat_h, flat_labels = h.flatten(0, -2), labels.flatten()
    total, ce, z = _VocabParallelLoss.apply(
        flat_h, local_weight, flat_labels, z_loss_multiplier, chunk_size, offset, mesh.get_group()
    )
    return LMLoss(total, ce, z)


@torch.no_grad()
def _token_logprobs(h, weight, labels, chunk_size: int, offset: int, group) -> torch.Tensor:
    """`loss.token_logprobs` with the vocabulary split over the TP ranks: each rank's slice of the logits, the
    log-sum-exp and the picked logits all-reduced (every rank gets the whole result)."""
    flat, where = _scored_positions(h, labels)
    out = torch.zeros(flat.shape, dtype=torch.float32, device=h.device)
    flat_h = h.flatten(0, -2)
    for start in range(0, where.numel(), chunk_size):
        idx = where[start : start + chunk_size]
        logits = (flat_h[idx] @ weight.t()).float()
        high = _all_reduce(logits.amax(-1), dist.ReduceOp.MAX, group)
        lse = high + _all_reduce((logits - high[:, None]).exp().sum(-1), dist.ReduceOp.SUM, group).log()
        local = flat[idx] - offset
        mine = (flat[idx] != IGNORE_INDEX) & (local >= 0) & (local < weight.shape[0])
        picked = _all_reduce(
            logits.gather(1, local.clamp(0, weight.shape[0] - 1)) * mine, dist.ReduceOp.SUM, group
        )
        out[idx] = (picked - lse[:, None]) * (flat[idx] != IGNORE_INDEX)
    return out.view(labels.shape)


def _all_reduce(t: torch.Tensor, op: dist.ReduceOp, group: dist.ProcessGroup) -> torch.Tensor:
    dist.all_reduce(t, op=op, group=group)
    return t


def _chunk(hc, weight, labels, offset: int, group):
    """fp32 local logits of a chunk and the global lse, valid mask, local target column and its mask."""
    logits = (hc @ weight.t()).float()
    high = _all_reduce(logits.amax(-1).detach(), dist.ReduceOp.MAX, group)
    sumexp = _all_reduce((logits - high[:, None]).exp().sum(-1), dist.ReduceOp.SUM, group)
    lse = high + sumexp.log()
    valid = labels != IGNORE_INDEX
    local = labels - offset
    mine = valid & (local >= 0) & (local < weight.shape[0])
    column = local.clamp(0, weight.shape[0] - 1)
    target = logits.gather(1, column[:, None]).squeeze(1) * mine
    target = _all_reduce(target, dist.ReduceOp.SUM, group)
    return logits, lse, valid, mine, column, target


class _VocabParallelLoss(torch.autograd.Function):
    """Loss sums of a vocabulary-split head; gradients of h (all-reduced) and of the weight slice made in forward."""

    @staticmethod
    def forward(ctx, h, weight, labels, z_mult: float, chunk_size: int, offset: int, group):
        grad_h = torch.empty_like(h)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        ce = h.new_zeros((), dtype=torch.float32)
        z = h.new_zeros((), dtype=torch.float32)
        for start in range(0, h.shape[0], chunk_size):
            end = start + chunk_size
            hc = h[start:end]
            logits, lse, valid, mine, column, target = _chunk(hc, weight, labels[start:end], offset, group)
            ce += ((lse - target) * valid).sum()
            z += z_mult * (lse.square() * valid).sum()
            grad = logit_grad(logits, lse, valid, z_mult, column, mine).to(h.dtype)  # this vocabulary slice
            grad_h[start:end] = grad @ weight
            grad_w += (grad.t() @ hc).float()
        _all_reduce(grad_h, dist.ReduceOp.SUM, group)  # each slice contributes a partial sum to dL/dh
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        ce_out, z_out = ce.clone(), z.clone()
        ctx.mark_non_differentiable(ce_out, z_out)
        return ce + z, ce_out, z_out

    @staticmethod
    def backward(ctx, grad_total, _grad_ce, _grad_z):
        return (*saved_grads_scaled(ctx, grad_total), None, None, None, None, None)


class VocabParallelLMHead(LMHead):
    """The LMHead of a tensor-parallel model: its weight a DTensor (vocabulary-split or replicated)."""

    def forward(
        self,
        h: torch.Tensor,
        tied_weight: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        z_loss_multiplier: float = 0.0,
        loss_chunk_size: int = 1024,
        per_token: bool = False,
    ) -> torch.Tensor | LMLoss:
        weight = self.weight if self.weight is not None else tied_weight
        return tp_head(self.norm(h), weight, labels, z_loss_multiplier, loss_chunk_size, per_token)
