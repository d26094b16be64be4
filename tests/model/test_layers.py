"""The pure math functions against independent formulations."""

import math

import torch
import torch.nn.functional as F

from olmo_fn.model import layers


def test_norms_match_torch():
    x = torch.randn(3, 5, 16)
    w = torch.rand(16) + 0.5
    torch.testing.assert_close(layers.layer_norm(x, 1e-5), F.layer_norm(x, (16,), eps=1e-5))
    torch.testing.assert_close(layers.rms_norm(x, 1e-6, w), F.rms_norm(x, (16,), w, eps=1e-6))


def test_rms_norm_computes_in_fp32_for_bf16_input():
    x = (torch.randn(4, 64) * 300).bfloat16()
    out = layers.rms_norm(x, 1e-6)
    assert out.dtype == torch.bfloat16
    ref = F.rms_norm(x.float(), (64,), eps=1e-6).bfloat16()
    assert torch.equal(out, ref)


def test_rope_matches_complex_rotation_of_halves():
    head_dim, theta = 8, 10_000.0
    x = torch.randn(1, 2, 6, head_dim)
    cos, sin = layers.rope_cos_sin(torch.arange(6), head_dim, theta)
    out = layers.apply_rope(x, cos[None], sin[None])
    half = head_dim // 2
    freqs = torch.tensor([theta ** (-2 * i / head_dim) for i in range(half)], dtype=torch.float64)
    angle = torch.arange(6, dtype=torch.float64)[:, None] * freqs
    z = torch.complex(x[..., :half].double(), x[..., half:].double()) * torch.polar(
        torch.ones_like(angle), angle
    )
    torch.testing.assert_close(out, torch.cat([z.real, z.imag], -1).float(), atol=1e-5, rtol=1e-5)


def test_rope_scores_depend_only_on_relative_position():
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(i, j):
        cos, sin = layers.rope_cos_sin(torch.tensor([i, j]), 16, 500_000.0)
        qi = layers.apply_rope(q, cos[None, :1], sin[None, :1])
        kj = layers.apply_rope(k, cos[None, 1:], sin[None, 1:])
        return (qi * kj).sum()

    torch.testing.assert_close(score(7, 3), score(107, 103), atol=1e-4, rtol=1e-4)


def _manual_attention(q, k, v, keep):
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~keep, float("-inf"))
    return scores.softmax(-1) @ v


def test_attention_causal_and_gqa():
    q = torch.randn(2, 4, 5, 8)
    k, v = torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    ref = _manual_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), causal)
    torch.testing.assert_close(layers.attention(q, k, v), ref, atol=1e-6, rtol=1e-5)


def test_attention_bias_masks_padding_and_future():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    bias = layers.attention_bias(mask, 5, torch.float32)
    q, k, v = torch.randn(2, 1, 5, 4), torch.randn(2, 1, 5, 4), torch.randn(2, 1, 5, 4)
    out = layers.attention(q, k, v, bias)
    keep = torch.ones(5, 5, dtype=torch.bool).tril()[None, None] & mask.bool()[:, None, None, :]
    ref = _manual_attention(q, k, v, keep)
    torch.testing.assert_close(out[0, :, 2:], ref[0, :, 2:], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out[1], ref[1], atol=1e-6, rtol=1e-5)
    assert torch.isfinite(out).all()  # fully masked pad rows stay finite


def test_swiglu_half_order():
    value, gate = torch.randn(3, 4), torch.randn(3, 4)
    torch.testing.assert_close(layers.swiglu(value, gate), value * gate * torch.sigmoid(gate))
