"""Language-model loss in fp32: next-token cross-entropy with ignored positions, OLMo's z-loss, and the
two normalisations (mean over label tokens, or the original's sum over all tokens of the batch).

Loss functions return *sums*; the caller divides by a denominator counted over the whole global batch
(see `loss_denominator`), so that an update does not depend on how the batch is split into micro-batches
or ranks.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
ORIGINAL_Z_LOSS_MULTIPLIER = 1e-4
"""The multiplier the original trainer's z-loss really used: its loss function's default, as the trainer
never passed the configured auxiliary_loss_multiplier on."""
Normalization = Literal["label_tokens", "batch_tokens"]


class LMLoss(NamedTuple):
    """Sums over the label tokens: `total` (= ce + z) is what to backpropagate; ce and z are for logging."""

    total: torch.Tensor
    ce: torch.Tensor
    z: torch.Tensor


def shift_labels(
    input_ids: torch.Tensor,
    label_mask: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    instance_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Targets aligned with the logits: labels[:, t] is token t+1, or -100 where it must not be learned.

    A target is ignored where its label_mask is False, its attention_mask is 0, or its whole instance is
    masked (instance_mask [B] False), as in the original. The last position has no target.
    """
    targets = input_ids.clone()
    if label_mask is not None:
        targets.masked_fill_(~label_mask.bool(), IGNORE_INDEX)
    if attention_mask is not None:
        targets.masked_fill_(attention_mask == 0, IGNORE_INDEX)
    if instance_mask is not None:
        targets.masked_fill_(~instance_mask.bool()[:, None], IGNORE_INDEX)
    labels = torch.full_like(targets, IGNORE_INDEX)
    labels[:, :-1] = targets[:, 1:]
    return labels


def loss_denominator(labels: torch.Tensor, normalization: Normalization) -> torch.Tensor:
    """Count of one (micro-)batch to add up into the global denominator, a 0-dim tensor on labels' device
    (no host sync).

    'label_tokens': positions with a target (a true mean over the learned tokens);
    'batch_tokens': every position of the batch, the original OLMo's normalisation (B * T).
    """
    if normalization == "batch_tokens":
        return torch.full((), labels.numel(), device=labels.device)
    return (labels != IGNORE_INDEX).sum()


def lm_loss(logits: torch.Tensor, labels: torch.Tensor, z_loss_multiplier: float = 0.0) -> LMLoss:
    """Plain form: cross-entropy and z-loss sums over [..., V] logits, computed in fp32."""
    flat = logits.float().flatten(0, -2)
    flat_labels = labels.flatten()
    valid = flat_labels != IGNORE_INDEX
    ce = F.cross_entropy(flat, flat_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    z = z_loss_multiplier * (flat.logsumexp(-1).square() * valid).sum()
    return LMLoss(ce + z, ce, z)


def chunked_lm_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    z_loss_multiplier: float = 0.0,
    chunk_size: int = 1024,
) -> LMLoss:
    """The loss of `lm_loss(hidden @ weight.T, labels)` without ever holding all fp32 logits.

    Logits are made `chunk_size` positions at a time; when a gradient is needed, it is computed chunk by
    chunk during the forward pass (saving a recomputation of the head) and handed out in backward.
    """
    h = hidden.flatten(0, -2)
    flat_labels = labels.flatten()
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        total, ce, z = _ChunkedLMLoss.apply(h, weight, flat_labels, z_loss_multiplier, chunk_size)
        return LMLoss(total, ce, z)
    ce = h.new_zeros((), dtype=torch.float32)
    z = h.new_zeros((), dtype=torch.float32)
    for start in range(0, h.shape[0], chunk_size):
        chunk = _chunk_terms(h[start : start + chunk_size], weight, flat_labels[start : start + chunk_size])
        ce += chunk[0]
        z += z_loss_multiplier * chunk[1]
    return LMLoss(ce + z, ce, z)


def token_logprobs(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk_size: int = 1024
) -> torch.Tensor:
    """fp32 log-probabilities of `labels` under `hidden @ weight.T`, the softmax taken over every row of
    weight (the padded vocabulary), for scoring without gradients.

    labels: [B, T] or [B, T, K] (K tokens scored at each position); -100 = not scored (0 in the result, which
    has labels' shape). Logits are made only at the positions with a label, `chunk_size` at a time.
    """
    flat, where = _scored_positions(hidden, labels)
    out = torch.zeros(flat.shape, dtype=torch.float32, device=hidden.device)
    h = hidden.flatten(0, -2)
    for start in range(0, where.numel(), chunk_size):
        idx = where[start : start + chunk_size]
        logits = (h[idx] @ weight.t()).float()
        picked = logits.gather(1, flat[idx].clamp(min=0)) - logits.logsumexp(-1, keepdim=True)
        out[idx] = picked * (flat[idx] != IGNORE_INDEX)
    return out.view(labels.shape)


def _scored_positions(hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels as [positions, K] and the indices of the positions with at least one label."""
    flat = labels.reshape(hidden.shape[:-1].numel(), -1)
    return flat, (flat != IGNORE_INDEX).any(1).nonzero().squeeze(1)


def _chunk_terms(h: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor):
    """fp32 logits of one chunk and its (ce sum, lse^2 sum, lse, valid mask, safe labels, logits)."""
    logits = (h @ weight.t()).float()
    lse = logits.logsumexp(-1)
    valid = labels != IGNORE_INDEX
    safe = labels.clamp(min=0)
    target = logits.gather(1, safe[:, None]).squeeze(1)
    ce = ((lse - target) * valid).sum()
    z = (lse.square() * valid).sum()
    return ce, z, lse, valid, safe, logits


class _ChunkedLMLoss(torch.autograd.Function):
    """Head projection + loss whose gradients are produced chunk by chunk in forward."""

    @staticmethod
    def forward(ctx, h, weight, labels, z_mult: float, chunk_size: int):
        grad_h = torch.empty_like(h)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        ce = h.new_zeros((), dtype=torch.float32)
        z = h.new_zeros((), dtype=torch.float32)
        for start in range(0, h.shape[0], chunk_size):
            end = start + chunk_size
            hc = h[start:end]
            c_ce, c_z, lse, valid, safe, logits = _chunk_terms(hc, weight, labels[start:end])
            ce += c_ce
            z += z_mult * c_z
            grad = logit_grad(logits, lse, valid, z_mult, safe, valid).to(h.dtype)
            grad_h[start:end] = grad @ weight
            grad_w += (grad.t() @ hc).float()
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        ce_out, z_out = ce.clone(), z.clone()
        ctx.mark_non_differentiable(ce_out, z_out)
        return ce + z, ce_out, z_out

    @staticmethod
    def backward(ctx, grad_total, _grad_ce, _grad_z):
        return (*saved_grads_scaled(ctx, grad_total), None, None, None)


def logit_grad(logits, lse, valid, z_mult: float, target_col, target_here) -> torch.Tensor:
    """d(ce + z)/dlogits of a chunk (in place of logits): softmax * (1 + 2 z lse) on positions with a target,
    minus one at the target's column where the target lies in these columns (target_here)."""
    grad = (logits - lse[:, None]).exp_().mul_(((1 + 2 * z_mult * lse) * valid)[:, None])
    return grad.scatter_add_(1, target_col[:, None], -target_here[:, None].float())


def saved_grads_scaled(ctx, grad_total: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Backward of a loss whose (grad_h, grad_w) were made in forward: scale them by the upstream gradient."""
    grad_h, grad_w = ctx.saved_tensors
    return grad_h * grad_total.to(grad_h.dtype), (grad_w * grad_total).to(ctx.weight_dtype)
