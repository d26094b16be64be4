"""The model's shape and numerics as a typed dataclass, validated on construction.

Field names follow the original OLMo's model config wherever the concept is the same, so an original
`config.yaml`'s `model:` section maps onto these fields directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from olmo_fn.errors import ConfigError

LayerNormType = Literal["default", "rms"]
LayerType = Literal["full", "sliding"]


def olmo3_layer_types() -> tuple[LayerType, ...]:
    """OLMo 3's pattern: three sliding-window layers, then a full one (so its 32 and 64 layers end full)."""
    return ("sliding", "sliding", "sliding", "full")


InitFn = Literal["mitchell", "normal", "full_megatron"]


@dataclass
class ModelConfig:
    """Shape and numerics of an OLMo-family decoder (OLMo 1 and OLMo 2)."""

    d_model: int = 768
    """Width of the residual stream."""
    n_heads: int = 12
    """Number of query heads; head_dim = d_model / n_heads."""
    n_kv_heads: int | None = None
    """Number of key/value heads (GQA/MQA); None means n_heads (multi-head attention)."""
    n_layers: int = 12
    """Number of transformer blocks."""
    mlp_ratio: int = 4
    """SwiGLU input projection size as a multiple of d_model, used when mlp_hidden_size is None."""
    mlp_hidden_size: int | None = None
    """Output size of the fused SwiGLU input projection (both halves, as in the original): the
    activation width is half of it."""
    layer_norm_type: LayerNormType = "default"
    """'default' = LayerNorm (OLMo 1), 'rms' = RMSNorm computed in fp32 (OLMo 2)."""
    layer_norm_with_affine: bool = False
    """Whether the block and final norms have a weight (OLMo 1: no; OLMo 2: yes)."""
    layer_norm_eps: float = 1e-5
    """Epsilon of every norm (OLMo 1: 1e-5, OLMo 2: 1e-6)."""
    attention_layer_norm: bool = False
    """QK-norm: normalise the projected queries and keys over their full width (OLMo 2)."""
    attention_layer_norm_with_affine: bool = True
    """Whether the QK-norms have a weight."""
    norm_after: bool = False
    """Apply the block norms to each sub-layer's output before the residual add (OLMo 2) instead of
    to its input (OLMo 1)."""
    clip_qkv: float | None = None
    """Clamp the projected queries, keys and values to [-clip_qkv, clip_qkv] (OLMo-7B-0424/0724: 8.0)."""
    rope_theta: float = 10_000.0
    """RoPE base (OLMo 1: 10000, OLMo 2: 500000)."""
    weight_tying: bool = False
    """Share the output head with the token embedding (OLMo-1B)."""
    vocab_size: int = 50280
    """Number of tokens of the tokenizer; ids at or past it are invalid input."""
    embedding_size: int | None = 50304
    """Rows of the embedding and columns of the logits, vocab_size padded for speed; None = vocab_size."""
    eos_token_id: int = 50279
    """End-of-sequence token id."""
    pad_token_id: int = 1
    """Padding token id."""
    max_sequence_length: int = 2048
    """Training sequence length; also the longest context the model is used with."""
    init_fn: InitFn = "normal"
    """Initialisation scheme: 'mitchell' (OLMo 1), 'normal' (OLMo 2) or 'full_megatron'."""
    init_std: float = 0.02
    """Standard deviation of 'normal' and 'full_megatron' initialisation."""
    init_cutoff_factor: float | None = None
    """Truncate initial weights at this many standard deviations (mitchell defaults to 3)."""
    emb_init_std: float | None = None
    """Standard deviation of the embedding under 'normal' init; None = init_std."""
    layer_types: tuple[LayerType, ...] | None = None
    """The layers' attention kinds, 'full' or 'sliding', as a pattern repeated over the layers (OLMo 3:
    sliding, sliding, sliding, full, so every fourth layer is full; n_layers entries give each its own);
    None = every layer full."""
    sliding_window: int | None = None
    """Keys a 'sliding' layer's query sees, itself included (OLMo 3: 4096)."""
    rope_yarn_factor: float | None = None
    """YaRN RoPE scaling of the 'full' layers (OLMo 3 long context: 8); None = plain RoPE everywhere. The
    'sliding' layers keep plain RoPE, as OLMo 3 does."""
    rope_yarn_original_max_position: int = 8192
    """The context the model was pretrained with, before YaRN stretched it."""
    rope_yarn_beta_fast: float = 32.0
    """YaRN's rotation count above which frequencies keep their value (extrapolated)."""
    rope_yarn_beta_slow: float = 1.0
    """YaRN's rotation count below which frequencies are divided by the factor (interpolated)."""
    rope_yarn_attention_factor: float | None = None
    """Scale of YaRN's cos/sin tables; None = 0.1 ln(factor) + 1, the YaRN paper's."""

    def __post_init__(self) -> None:
        validate_model_config(self)

    @property
    def effective_n_kv_heads(self) -> int:
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def padded_vocab_size(self) -> int:
        return self.vocab_size if self.embedding_size is None else self.embedding_size

    @property
    def ff_proj_size(self) -> int:
        """Size of the fused SwiGLU input projection (value half then gate half)."""
        return self.mlp_hidden_size if self.mlp_hidden_size is not None else self.mlp_ratio * self.d_model

    @property
    def hidden_size(self) -> int:
        """Width of the SwiGLU activation (the input of the down projection)."""
        return self.ff_proj_size // 2

    @property
    def layer_kinds(self) -> tuple[LayerType, ...]:
        """Each block's attention kind ('full' or 'sliding')."""
        pattern = self.layer_types or ("full",)
        return tuple(pattern[i % len(pattern)] for i in range(self.n_layers))

    @property
    def yarn(self) -> tuple[float, int, float, float, float] | None:
        """(factor, original context, beta_fast, beta_slow, attention factor) of the full layers, or None."""
        if self.rope_yarn_factor is None:
            return None
        factor = self.rope_yarn_factor
        scale = self.rope_yarn_attention_factor
        if scale is None:
            scale = 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0
        return (
            factor,
            self.rope_yarn_original_max_position,
            self.rope_yarn_beta_fast,
            self.rope_yarn_beta_slow,
            scale,
        )

    @property
    def family(self) -> Literal["olmo1", "olmo2", "hybrid"]:
        """Which published architecture this is: decides the Hugging Face class it maps to."""
        if self.layer_norm_type == "default" and not self.layer_norm_with_affine:
            if not self.norm_after and not self.attention_layer_norm:
                return "olmo1"
        if self.layer_norm_type == "rms" and self.layer_norm_with_affine and self.norm_after:
            if self.attention_layer_norm and self.attention_layer_norm_with_affine:
                return "olmo2"
        return "hybrid"


def _need(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"model.{field}: {message}")


def validate_model_config(cfg: ModelConfig) -> None:
    """Raise ConfigError naming the first field that is out of range or inconsistent with another."""
    for name in ("d_model", "n_heads", "n_layers", "vocab_size", "max_sequence_length"):
        _need(getattr(cfg, name) > 0, name, f"must be positive, got {getattr(cfg, name)}")
    _need(
        cfg.d_model % cfg.n_heads == 0,
        "d_model",
        f"{cfg.d_model} is not divisible by n_heads={cfg.n_heads}; pick a multiple of n_heads",
    )
    _need(cfg.head_dim % 2 == 0, "n_heads", f"head_dim {cfg.head_dim} must be even for RoPE")
    kv = cfg.effective_n_kv_heads
    _need(kv > 0, "n_kv_heads", f"must be positive or None, got {cfg.n_kv_heads}")
    _need(
        cfg.n_heads % kv == 0,
        "n_heads",
        f"{cfg.n_heads} is not a multiple of n_kv_heads={kv}; use a divisor of n_heads for n_kv_heads",
    )
    _need(
        cfg.ff_proj_size > 0 and cfg.ff_proj_size % 2 == 0,
        "mlp_hidden_size",
        f"the SwiGLU input projection size must be positive and even, got {cfg.ff_proj_size}",
    )
    _need(
        cfg.padded_vocab_size >= cfg.vocab_size,
        "embedding_size",
        f"{cfg.embedding_size} is smaller than vocab_size={cfg.vocab_size}; use at least vocab_size",
    )
    for name in ("eos_token_id", "pad_token_id"):
        value = getattr(cfg, name)
        _need(0 <= value < cfg.vocab_size, name, f"{value} is outside [0, vocab_size={cfg.vocab_size})")
    _need(cfg.layer_norm_eps > 0, "layer_norm_eps", f"must be positive, got {cfg.layer_norm_eps}")
    _need(cfg.rope_theta > 0, "rope_theta", f"must be positive, got {cfg.rope_theta}")
    _need(
        cfg.clip_qkv is None or cfg.clip_qkv > 0, "clip_qkv", f"must be positive or None, got {cfg.clip_qkv}"
    )
    _need(cfg.init_std > 0, "init_std", f"must be positive, got {cfg.init_std}")
    _need(
        cfg.init_cutoff_factor is None or cfg.init_cutoff_factor > 0,
        "init_cutoff_factor",
        f"must be positive or None, got {cfg.init_cutoff_factor}",
    )
    _need(cfg.layer_norm_type in ("default", "rms"), "layer_norm_type", "must be 'default' or 'rms'")
    _check_attention_layout(cfg)
    _need(
        cfg.init_fn in ("mitchell", "normal", "full_megatron"),
        "init_fn",
        f"unknown scheme {cfg.init_fn!r}; use mitchell, normal or full_megatron",
    )


def _check_attention_layout(cfg: ModelConfig) -> None:
    kinds = cfg.layer_kinds
    _need(cfg.layer_types != (), "layer_types", "is empty; give a pattern such as [sliding, full] or None")
    _need(
        set(kinds) <= {"full", "sliding"}, "layer_types", f"entries must be 'full' or 'sliding', got {kinds}"
    )
    if "sliding" in kinds:
        _need(
            cfg.sliding_window is not None and cfg.sliding_window > 0,
            "sliding_window",
            f"must be a positive number of tokens for 'sliding' layers, got {cfg.sliding_window}",
        )
    if cfg.rope_yarn_factor is not None:
        _need(cfg.rope_yarn_factor > 0, "rope_yarn_factor", f"must be positive, got {cfg.rope_yarn_factor}")
        _need(
            cfg.rope_yarn_original_max_position > 0,
            "rope_yarn_original_max_position",
            f"must be positive, got {cfg.rope_yarn_original_max_position}",
        )
