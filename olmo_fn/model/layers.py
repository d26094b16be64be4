"""The math of an OLMo block as pure functions over tensors: norms, RoPE, attention, SwiGLU.

Nothing here owns parameters; `transformer.py` holds them in thin modules that call these functions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


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


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Scaled dot-product attention over [B, H, T, D] tensors, causal unless a bias is given.

    Keys and values may have fewer heads than queries (GQA/MQA).
    """
    gqa = k.shape[1] != q.shape[1]
    if bias is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), enable_gqa=gqa)


def swiglu(value: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """OLMo's SwiGLU: silu(gate) * value (the original's fused projection puts value first, gate second)."""
    return F.silu(gate) * value
