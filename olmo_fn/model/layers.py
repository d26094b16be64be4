"""The math of an OLMo block as pure functions over tensors: norms, RoPE, attention, SwiGLU.

Nothing here owns parameters; `transformer.py` holds them in thin modules that call these functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def layer_norm(x: torch.Tensor, eps: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    """OLMo 1's LayerNorm (no bias), computed in fp32 and cast back to the input dtype."""
    out = F.layer_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)
    return out if weight is None else out * weight


def rms_norm(x: torch.Tensor, eps: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    """OLMo 2's RMSNorm: normalise in fp32, cast back, then scale by the weight."""
    xf = x.float()
    out = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)
    return out if weight is None else out * weight


def rope_inv_freq(
    head_dim: int, theta: float, yarn: tuple[float, int, float, float, float] | None = None
) -> tuple[torch.Tensor, float]:
    """RoPE's [head_dim / 2] inverse frequencies and the scale of its tables: plain, or YaRN-scaled.

    yarn = (factor, original context, beta_fast, beta_slow, attention factor): frequencies that turn fewer than
    beta_slow times over the original context are divided by the factor, those that turn more than beta_fast
    times keep their value, with a linear ramp between (dimension bounds rounded outwards, as transformers)."""
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim
    inv_freq = 1.0 / (theta**exponent)
    if yarn is None:
        return inv_freq, 1.0
    factor, original, beta_fast, beta_slow, scale = yarn

    def dim_of(rotations: float) -> float:  # the dimension whose frequency turns `rotations` times
        return head_dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = max(math.floor(dim_of(beta_fast)), 0), min(math.ceil(dim_of(beta_slow)), head_dim - 1)
    ramp = ((torch.arange(head_dim // 2, dtype=torch.float32) - low) / max(high - low, 0.001)).clamp(0, 1)
    keep = 1 - ramp  # 1: extrapolate (keep the frequency), 0: interpolate (divide it by the factor)
    return inv_freq / factor * (1 - keep) + inv_freq * keep, scale


def rope_cos_sin(
    positions: torch.Tensor,
    head_dim: int,
    theta: float,
    yarn: tuple[float, int, float, float, float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 cos/sin tables of shape [*positions.shape, head_dim] for rotate-half (NeoX) RoPE (YaRN-scaled
    when yarn is given, see rope_inv_freq)."""
    inv_freq, scale = rope_inv_freq(head_dim, theta, yarn)
    angles = positions.float().unsqueeze(-1) * inv_freq.to(positions.device)
    angles = torch.cat((angles, angles), dim=-1)
    if scale == 1.0:
        return angles.cos(), angles.sin()
    return angles.cos() * scale, angles.sin() * scale


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, H, T, D] by the angles of cos/sin [B or 1, T, D], in fp32, returning x's dtype.

    Rotate-half: the pair (x[i], x[i + D/2]) turns by angle i. Computed on the halves, which is the same
    arithmetic as x * cos + rotate_half(x) * sin (bit for bit) with fewer full-size passes.
    """
    xf = x.float()
    half = xf.shape[-1] // 2
    c, s = cos[..., :half].unsqueeze(1), sin[..., :half].unsqueeze(1)
    x1, x2 = xf[..., :half], xf[..., half:]
    return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1).to(x.dtype)


def attention_bias(attention_mask: torch.Tensor, query_len: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive [B, 1, Tq, Tk] bias: causal, plus padding from a [B, Tk] keep-mask (1 = real token).

    Masked entries get the dtype's most negative finite value (as the original does), so a row with
    nothing to attend to stays finite instead of turning into NaN.
    """
    key_len = attention_mask.shape[-1]
    device = attention_mask.device
    q_pos = torch.arange(key_len - query_len, key_len, device=device)
    causal = q_pos[:, None] >= torch.arange(key_len, device=device)[None, :]
    keep = causal[None, None] & attention_mask.bool()[:, None, None, :]
    return torch.zeros(keep.shape, dtype=dtype, device=device).masked_fill(~keep, torch.finfo(dtype).min)


def window_bias(
    query_len: int, key_len: int, window: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Additive [Tq, Tk] bias of a causal sliding window: the last query_len positions each see the `window`
    keys ending at their own position."""
    q_pos = torch.arange(key_len - query_len, key_len, device=device)[:, None]
    k_pos = torch.arange(key_len, device=device)[None, :]
    keep = (k_pos <= q_pos) & (k_pos > q_pos - window)
    return torch.zeros(keep.shape, dtype=dtype, device=device).masked_fill(~keep, torch.finfo(dtype).min)


@dataclass(frozen=True)
class SparseMask:
    """Which keys a causal query sees, as rules rather than a dense [T, T] matrix: only its own document's
    (doc_ids [B, T], equal within a document), only the `window` keys ending at itself, only real keys
    (key_mask [B, T], True = real)."""

    doc_ids: torch.Tensor | None = None
    window: int | None = None
    key_mask: torch.Tensor | None = None


def document_ids(input_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """[B, T] document index of each token of packed instances: a new document starts after each EOS."""
    ends = (input_ids == eos_token_id).long()
    return ends.cumsum(-1) - ends


def blockwise_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: SparseMask, chunk: int = 1024
) -> torch.Tensor:
    """Exact causal attention under a SparseMask with memory linear in T: the queries go `chunk` at a time,
    each chunk over the keys it can reach (from the window's start, else from 0) with a [B, 1, C, K]
    boolean mask. Without a window a chunk's mask spans every earlier key, so it is rebuilt in backward
    instead of kept (activation checkpointing of the chunk). Every query sees at least itself, so no row is
    empty (a padding query sees only itself)."""
    steps = q.shape[2]
    out = []
    for start in range(0, steps, chunk):
        end = min(start + chunk, steps)
        low = 0 if mask.window is None else max(0, start - mask.window + 1)
        args = (q[:, :, start:end], k[:, :, low:end], v[:, :, low:end], mask, start, low)
        if mask.window is None and steps > chunk and torch.is_grad_enabled():
            out.append(checkpoint(_chunk_attention, *args, use_reentrant=False))
        else:
            out.append(_chunk_attention(*args))
    return torch.cat(out, dim=2)


def _chunk_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: SparseMask, start: int, low: int
) -> torch.Tensor:
    """Queries start.. of q over keys low.. of k/v under `mask`."""
    qp = torch.arange(start, start + q.shape[2], device=q.device)[:, None]
    kp = torch.arange(low, low + k.shape[2], device=q.device)[None, :]
    keep = kp <= qp
    if mask.window is not None:
        keep = keep & (kp > qp - mask.window)
    keep = keep[None, None]
    end = start + q.shape[2]
    if mask.doc_ids is not None:
        keep = keep & (mask.doc_ids[:, None, start:end, None] == mask.doc_ids[:, None, None, low:end])
    if mask.key_mask is not None:  # a padding query still sees itself: its row stays finite
        keep = keep & (mask.key_mask.bool()[:, None, None, low:end] | (kp == qp))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=keep, enable_gqa=k.shape[1] != q.shape[1])


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | SparseMask | None = None
) -> torch.Tensor:
    """Scaled dot-product attention over [B, H, T, D] tensors: causal, or under an additive bias, or under a
    SparseMask (blockwise_attention). Keys and values may have fewer heads than queries (GQA/MQA).
    """
    if isinstance(bias, SparseMask):
        return blockwise_attention(q, k, v, bias)
    gqa = k.shape[1] != q.shape[1]
    if bias is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), enable_gqa=gqa)


def swiglu(value: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """OLMo's SwiGLU: silu(gate) * value (the original's fused projection puts value first, gate second)."""
    return F.silu(gate) * value
