"""Typed configuration dataclasses. Dataclasses only: the code that uses them lives elsewhere.

Field names follow the original OLMo config wherever the concept is the same, so that an original
`config.yaml` maps onto these fields directly. Attribute docstrings become the `--help` text (tyro).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from olmo_fn.errors import ConfigError

LayerNormType = Literal["default", "rms"]
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
    _need(
        cfg.init_fn in ("mitchell", "normal", "full_megatron"),
        "init_fn",
        f"unknown scheme {cfg.init_fn!r}; use mitchell, normal or full_megatron",
    )


MemmapDtype = Literal["uint8", "uint16", "uint32", "uint64"]
PadDirection = Literal["right", "left"]


@dataclass
class InstanceFilterConfig:
    """OLMo 2's repeated n-gram filter: an instance with a long enough repetition is masked from the loss."""

    repetition_max_period: int = 13
    """Longest n-gram period (in tokens) that is searched for repetitions."""
    repetition_min_period: int = 1
    """Shortest n-gram period (in tokens) that is searched for repetitions."""
    repetition_max_count: int = 32
    """An instance in which some n-gram repeats back to back this many times is masked from the loss."""


@dataclass
class DataConfig:
    """Training data: raw token files, their order and the loader that reads them."""

    paths: list[str] = field(default_factory=list)
    """Token files (headerless arrays named .npy), local paths or fsspec URLs (gs://, s3://, https://)."""
    datasets: dict[str, list[str]] | None = None
    """Named groups of token files, used instead of paths; each instance carries its group's label."""
    label_mask_paths: list[str] | None = None
    """One raw bool file per token file, of the same length: False excludes a token from the loss (SFT)."""
    memmap_dtype: MemmapDtype = "uint16"
    """Integer type of the token files."""
    pad_direction: PadDirection = "right"
    """Side on which collate_instances pads items shorter than the longest of a batch (training instances
    are all max_sequence_length long and never padded)."""
    generate_attention_mask: bool = False
    """Give each batch an attention_mask that is False at the pad_token_id positions."""
    generate_doc_lengths: bool = False
    """Give each batch doc_lens (lengths of the EOS-terminated documents of each instance)."""
    seed: int | None = None
    """Seed of the data order (shuffled with seed + epoch); None = the run's seed."""
    num_workers: int = 0
    """Data loader worker processes (0 = read in the training process)."""
    drop_last: bool = False
    """Drop the instances that do not divide evenly over the ranks instead of repeating the first ones."""
    pin_memory: bool = False
    """Put batches in pinned memory (faster copies to a GPU)."""
    prefetch_factor: int | None = None
    """Batches each worker loads ahead; None = torch's default (2) when num_workers > 0."""
    persistent_workers: bool = False
    """Keep worker processes alive between epochs."""
    timeout: int = 0
    """Seconds to wait for a batch from a worker (0 = forever)."""
    instance_filter: InstanceFilterConfig | None = None
    """Repeated n-gram filter (OLMo 2); None = off."""


@dataclass
class OptimizerConfig:
    """AdamW with the original OLMo's parameter groups."""

    name: Literal["adamw"] = "adamw"
    """Optimizer (AdamW, decoupled weight decay)."""
    learning_rate: float = 4e-4
    """Peak learning rate."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas."""
    eps: float = 1e-5
    """AdamW epsilon (the original's default is 1e-5, not torch's 1e-8)."""
    weight_decay: float = 0.1
    """Decoupled weight decay of the decayed group."""
    decay_norm_and_bias: bool = False
    """Also decay norm weights (and biases)."""
    decay_embeddings: bool = False
    """Also decay the token embedding."""
    fused: bool | None = None
    """Use torch's fused AdamW kernel; None = when the device supports it."""


SchedulerName = Literal[
    "constant",
    "constant_with_warmup",
    "linear_with_warmup",
    "cosine_with_warmup",
    "inverse_sqrt_with_warmup",
    "wsd",
]


@dataclass
class SchedulerConfig:
    """Learning-rate schedule as a pure function of training progress (steps or tokens)."""

    name: SchedulerName = "cosine_with_warmup"
    """Schedule shape; every one but 'constant' starts with a linear warmup."""
    units: Literal["steps", "tokens"] = "steps"
    """Unit of t_warmup, t_max and decay lengths."""
    t_warmup: float = 100
    """Warmup length."""
    t_max: float | None = None
    """End of the decay; None = the end of training (max_duration)."""
    alpha_f: float = 0.1
    """Final learning rate as a fraction of the peak."""
    warmup_min_lr: float | None = None
    """Learning rate at step 0 of the warmup; None = 10% of the peak (the original's default)."""
    decay_fraction: float = 0.1
    """WSD only: fraction of t_max spent in the final linear decay."""
    grad_clip_warmup_steps: float | None = None
    """While progress <= this (in `units`), the gradient-norm limit is multiplied by grad_clip_warmup_factor."""
    grad_clip_warmup_factor: float | None = None
    """Factor of max_grad_norm during the clip warmup."""


@dataclass
class TokenizerConfig:
    """The tokenizer used to decode and encode text (inspection, generation, evaluation)."""

    identifier: str | None = None
    """Path or URL of a tokenizers JSON file."""


@dataclass
class EvalConfig:
    """In-loop language-model evaluation on held-out token files."""

    datasets: dict[str, list[str]] = field(default_factory=dict)
    """Label -> token files; each label reports eval/{label}/CrossEntropyLoss and Perplexity."""
    device_eval_batch_size: int = 8
    """Instances per evaluation batch on each device."""
    eval_subset_num_batches: int = -1
    """Batches evaluated per dataset (-1 = all)."""


@dataclass
class TrackingConfig:
    """Where metrics go: the console and an Aim repository."""

    aim: bool = True
    """Record the run in Aim (rank 0)."""
    aim_repo: str | None = None
    """Aim repository folder; None = {save_folder}/aim. Browse it with `aim up --repo PATH`."""
    experiment: str | None = None
    """Aim experiment name; None = the run name."""
    system_tracking_interval: int | None = 10
    """Seconds between Aim's system metrics (CPU, memory, GPU); None = off."""
    progress_bar: bool | None = None
    """Show a progress bar; None = only when stderr is a terminal (plain log lines otherwise)."""


@dataclass
class TrainConfig:
    """An OLMo training run: model, data, optimizer, schedule, checkpoints, evaluation and tracking."""

    run_name: str = "olmo-run"
    """Name of the run (Aim run name, log lines)."""
    seed: int = 6198
    """Seed of initialisation, data order (unless data.seed) and everything random."""
    max_duration: str = "1ep"
    """Training length: steps ('1000'), tokens ('2e12T') or epochs ('1ep')."""
    global_train_batch_size: int = 512
    """Instances per optimizer step, over all ranks."""
    device_train_microbatch_size: int = 8
    """Instances per forward/backward pass on one device; gradients accumulate up to the global batch."""
    precision: Literal["fp32", "amp_bf16"] = "fp32"
    """fp32 everywhere, or bf16 autocast with fp32 master weights and optimizer state (GPUs)."""
    compile: bool = False
    """torch.compile the model's blocks and the loss (worth it on GPUs; only costs time on a CPU)."""
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm to this; None = no clipping."""
    softmax_auxiliary_loss: bool = False
    """Add OLMo's z-loss (auxiliary_loss_multiplier x logsumexp^2) to the loss."""
    auxiliary_loss_multiplier: float = 1e-4
    """z-loss multiplier (OLMo 2: 1e-5)."""
    loss_normalization: Literal["batch_tokens", "label_tokens"] = "batch_tokens"
    """Divide the summed loss by every token of the global batch (the original) or by its label tokens."""
    save_folder: str = "runs/olmo-run"
    """Folder (local or fsspec URL) for checkpoints, config.yaml and train_data/global_indices.npy."""
    save_overwrite: bool = False
    """Start afresh in a save folder that already holds checkpoints, replacing them."""
    save_interval: int | None = None
    """Steps between sharded checkpoints (None = none)."""
    save_interval_unsharded: int | None = 1000
    """Steps between unsharded checkpoints (None = none); one is always written at the end."""
    save_num_checkpoints_to_keep: int = -1
    """Sharded checkpoints to keep (-1 = all)."""
    save_num_unsharded_checkpoints_to_keep: int = -1
    """Unsharded checkpoints to keep (-1 = all)."""
    load_path: str | None = None
    """Checkpoint to start from: native, sharded, original OLMo or Hugging Face; local or URL."""
    reset_trainer_state: bool = False
    """Load only model and optimizer from load_path: step 0, data from the start, schedule from 0."""
    reset_optimizer_state: bool = False
    """Load only the model (and trainer state); the learning rate ramps back up over t_warmup."""
    try_load_latest_save: bool = False
    """Resume from the latest checkpoint in save_folder if there is one (overrides load_path)."""
    stop_at: int | None = None
    """Stop after this step even if max_duration is further."""
    eval_interval: int | None = 1000
    """Steps between evaluations (None = only at the end)."""
    eval_on_load: bool = False
    """Also evaluate before the first step (a baseline for the validation loss)."""
    console_log_interval: int = 1
    """Steps between metric log lines."""
    dry_run: bool = False
    """Print the resolved config, parameter count, FLOPs per token and a memory estimate, then exit."""
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
