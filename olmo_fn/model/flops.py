"""Counting from a config alone: parameters and training FLOPs per token."""

from __future__ import annotations

from olmo_fn.config import ModelConfig


def num_params(cfg: ModelConfig, include_embedding: bool = True) -> int:
    """Exact parameter count of the model `cfg` describes (equal to the built model's)."""
    d, hd, kv = cfg.d_model, cfg.head_dim, cfg.effective_n_kv_heads
    attention = d * cfg.n_heads * hd * 2 + 2 * d * kv * hd
    if cfg.attention_layer_norm and cfg.attention_layer_norm_with_affine:
        attention += cfg.n_heads * hd + kv * hd
    mlp = 3 * d * cfg.hidden_size
    norms = 2 * d if cfg.layer_norm_with_affine else 0
    blocks = cfg.n_layers * (attention + mlp + norms)
    final_norm = d if cfg.layer_norm_with_affine else 0
    embedding = cfg.padded_vocab_size * d
    head = 0 if cfg.weight_tying else embedding
    return blocks + final_norm + head + (embedding if include_embedding else 0)


def flops_per_token(cfg: ModelConfig, seq_len: int | None = None) -> int:
    """Training FLOPs per token (forward + backward): 6 x matmul parameters + 12 x layers x d x seq.

    Matmul parameters are all weights but the embedding lookup (the output head counts, tied or not);
    the attention term counts the full T x T score matrix, as PaLM's MFU convention does.
    """
    seq_len = cfg.max_sequence_length if seq_len is None else seq_len
    matmul = num_params(cfg, include_embedding=False) + (
        cfg.padded_vocab_size * cfg.d_model if cfg.weight_tying else 0
    )
    return 6 * matmul + 12 * cfg.n_layers * cfg.d_model * seq_len
