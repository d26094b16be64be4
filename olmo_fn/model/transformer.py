"""Thin nn.Module containers for an OLMo decoder: they own the parameters and call `layers`.

One module per block, and one projection per Linear, so that FSDP2 (`fully_shard`), tensor parallel
(`parallelize_module`: q/k/v, up and gate are column-shardable, o and down row-shardable), activation
checkpointing and `torch.compile` can each wrap the piece they need. Parameter names:

    embeddings.weight
    blocks.{i}.attention.{q,k,v,o}_proj.weight, blocks.{i}.attention.{q,k}_norm.weight
    blocks.{i}.attention_norm.weight, blocks.{i}.mlp_norm.weight
    blocks.{i}.mlp.{up,gate,down}_proj.weight
    lm_head.norm.weight, lm_head.weight
Norm weights exist only when the config gives the norms an affine weight; lm_head.weight only when the head
is not tied to the embedding.
"""

from __future__ import annotations

import torch
from torch import nn

from olmo_fn.config import ModelConfig
from olmo_fn.errors import DataError
from olmo_fn.loss import LMLoss, chunked_lm_loss, token_logprobs
from olmo_fn.model import layers
from olmo_fn.model.kv_cache import KVCache, LayerCache


class Norm(nn.Module):
    """LayerNorm or RMSNorm over the last dimension, with an optional weight."""

    def __init__(self, size: int, kind: str, eps: float, affine: bool):
        super().__init__()
        self.kind, self.eps = kind, eps
        self.weight = nn.Parameter(torch.ones(size)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fn = layers.rms_norm if self.kind == "rms" else layers.layer_norm
        return fn(x, self.eps, self.weight)


class Attention(nn.Module):
    """Causal self-attention with separate q/k/v projections, optional clip_qkv and full-width QK-norm."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, hd, kv = cfg.d_model, cfg.head_dim, cfg.effective_n_kv_heads
        self.head_dim, self.clip_qkv = hd, cfg.clip_qkv
        self.q_proj = nn.Linear(d, cfg.n_heads * hd, bias=False)
        self.k_proj = nn.Linear(d, kv * hd, bias=False)
        self.v_proj = nn.Linear(d, kv * hd, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * hd, d, bias=False)
        self.q_norm = self.k_norm = None
        if cfg.attention_layer_norm:
            affine = cfg.attention_layer_norm_with_affine
            kind, eps = cfg.layer_norm_type, cfg.layer_norm_eps
            self.q_norm = Norm(cfg.n_heads * hd, kind, eps, affine)
            self.k_norm = Norm(kv * hd, kind, eps, affine)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        bias: torch.Tensor | None,
        kv: LayerCache | None = None,
    ) -> torch.Tensor:
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.clip_qkv is not None:
            q, k, v = (t.clamp(-self.clip_qkv, self.clip_qkv) for t in (q, k, v))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        # Batch and sequence sizes come from the projections: under sequence parallelism x is a shard.
        batch, seq = q.shape[0], q.shape[1]
        q, k, v = (t.view(batch, seq, -1, self.head_dim).transpose(1, 2) for t in (q, k, v))
        q, k = layers.apply_rope(q, cos, sin), layers.apply_rope(k, cos, sin)
        if kv is None:
            out = layers.attention(q, k, v, bias)
        else:  # decoding: store the rotated keys and values, attend over the whole cache
            out = kv.attend(q, k, v, bias)
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, -1))


class MLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.up_proj = nn.Linear(cfg.d_model, cfg.hidden_size, bias=False)
        self.gate_proj = nn.Linear(cfg.d_model, cfg.hidden_size, bias=False)
        self.down_proj = nn.Linear(cfg.hidden_size, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(layers.swiglu(self.up_proj(x), self.gate_proj(x)))


class Block(nn.Module):
    """One transformer block: pre-norm (OLMo 1) or norms on the sub-layer outputs (OLMo 2)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm_after = cfg.norm_after
        kind, eps, affine = cfg.layer_norm_type, cfg.layer_norm_eps, cfg.layer_norm_with_affine
        self.attention = Attention(cfg)
        self.attention_norm = Norm(cfg.d_model, kind, eps, affine)
        self.mlp = MLP(cfg)
        self.mlp_norm = Norm(cfg.d_model, kind, eps, affine)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        bias: torch.Tensor | None = None,
        kv: LayerCache | None = None,
    ) -> torch.Tensor:
        if self.norm_after:
            x = x + self.attention_norm(self.attention(x, cos, sin, bias, kv))
            return x + self.mlp_norm(self.mlp(x))
        x = x + self.attention(self.attention_norm(x), cos, sin, bias, kv)
        return x + self.mlp(self.mlp_norm(x))


class LMHead(nn.Module):
    """Final norm and output projection; given labels it returns loss sums without full fp32 logits."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm = Norm(cfg.d_model, cfg.layer_norm_type, cfg.layer_norm_eps, cfg.layer_norm_with_affine)
        tied = cfg.weight_tying
        self.weight = None if tied else nn.Parameter(torch.empty(cfg.padded_vocab_size, cfg.d_model))

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
        h = self.norm(h)
        if labels is None:
            return h @ weight.t()
        if per_token:
            return token_logprobs(h, weight, labels, loss_chunk_size)
        return chunked_lm_loss(h, weight, labels, z_loss_multiplier, loss_chunk_size)


class Transformer(nn.Module):
    """An OLMo-family decoder. forward() gives logits over the padded vocabulary, or loss sums given labels."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embeddings = nn.Embedding(cfg.padded_vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.lm_head = LMHead(cfg)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        z_loss_multiplier: float = 0.0,
        loss_chunk_size: int = 1024,
        cache: KVCache | None = None,
        per_token: bool = False,
        attention_bias: torch.Tensor | None = None,
        doc_ids: torch.Tensor | None = None,
    ) -> torch.Tensor | LMLoss:
        """Run the decoder on [B, T] token ids.

        attention_mask: [B, T], 1 for real tokens, 0 for padding (e.g. left padding); positions: [B, T] or
        [T] RoPE positions (default: 0..T-1, as the original, which ignores padding). With labels ([B, T],
        -100 = ignored; already aligned so labels[:, t] is the target of position t) the result is an
        `LMLoss` of fp32 sums, or with per_token=True the [B, T] fp32 log-probabilities of the labels (0 where
        ignored; logits are made only where there is a label); otherwise [B, T, embedding_size] logits. With a `KVCache` (decoding) the tokens
        go to the cache's slots, attend over the whole cache (its key_mask replaces attention_mask), and only
        the last position's logits come back: [B, 1, embedding_size]. attention_bias: an additive
        [B, 1, T, T] fp32 mask used instead of the causal one (e.g. several continuations packed after one
        context, each with its own positions). doc_ids: [B, T] document index of each token of packed
        instances (layers.document_ids): a token attends only within its document, exactly as if each
        document ran alone (positions still count from the instance's start, as the original's).
        """
        check_token_ids(input_ids, self.config.vocab_size)
        cfg = self.config
        if positions is None:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        h = self.embeddings(input_ids)
        rope = _rope_tables(cfg, positions)
        masks = _attention_masks(cfg, input_ids, attention_mask, attention_bias, cache, doc_ids)
        for i, (block, kind) in enumerate(zip(self.blocks, cfg.layer_kinds, strict=True)):
            (cos, sin), bias = rope[kind], masks[kind]
            h = block(h, cos, sin, bias) if cache is None else block(h, cos, sin, bias, cache.layer(i))
        if cache is not None:
            h = h[:, -1:]
        tied = self.embeddings.weight if cfg.weight_tying else None
        return self.lm_head(h, tied, labels, z_loss_multiplier, loss_chunk_size, per_token)


def _rope_tables(cfg: ModelConfig, positions: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """cos/sin [B or 1, T, head_dim] per layer kind: YaRN-scaled for the full layers when configured."""

    def tables(yarn) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = layers.rope_cos_sin(positions, cfg.head_dim, cfg.rope_theta, yarn)
        return (cos[None], sin[None]) if cos.dim() == 2 else (cos, sin)

    plain = tables(None)
    return {"full": tables(cfg.yarn) if cfg.yarn is not None else plain, "sliding": plain}


def _attention_masks(
    cfg: ModelConfig,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    attention_bias: torch.Tensor | None,
    cache: KVCache | None,
    doc_ids: torch.Tensor | None,
) -> dict[str, torch.Tensor | layers.SparseMask | None]:
    """Each layer kind's mask: None (plain causal), an additive fp32 bias, or a SparseMask (documents and
    windows, never a dense [T, T] matrix); sliding layers add their window to whatever the full ones use."""
    window = cfg.sliding_window if "sliding" in cfg.layer_kinds else None
    if cache is not None:
        steps = input_ids.shape[1]
        full = cache.mask(steps)
        return {"full": full, "sliding": cache.mask(steps, window) if window else full}
    if attention_bias is not None:  # an explicit dense bias (packed continuations in evaluation)
        if window is None:
            return {"full": attention_bias, "sliding": attention_bias}
        steps = input_ids.shape[1]
        band = layers.window_bias(steps, steps, window, torch.float32, input_ids.device)
        # both are 0 or the most negative finite value: clamping their sum keeps masked entries finite
        return {
            "full": attention_bias,
            "sliding": (attention_bias + band).clamp(min=torch.finfo(torch.float32).min),
        }
    full = None
    if doc_ids is not None:
        full = layers.SparseMask(doc_ids, None, attention_mask)
    elif attention_mask is not None:
        full = layers.attention_bias(attention_mask, input_ids.shape[1], torch.float32)
    sliding = layers.SparseMask(doc_ids, window, attention_mask) if window is not None else full
    return {"full": full, "sliding": sliding}


def check_token_ids(input_ids: torch.Tensor, vocab_size: int) -> None:
    """Raise a clear error for token ids outside [0, vocab_size); free on CPU tensors, skipped elsewhere."""
    if input_ids.device.type != "cpu" or torch.compiler.is_compiling() or input_ids.numel() == 0:
        return
    low, high = int(input_ids.min()), int(input_ids.max())
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise DataError(
            f"input_ids: token id {bad} is outside the model's vocabulary [0, {vocab_size}); "
            "check that the data was tokenised with this model's tokenizer (model.vocab_size)"
        )
