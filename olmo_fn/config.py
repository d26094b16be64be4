"""Typed configuration dataclasses. Dataclasses only: the code that uses them lives elsewhere.

Field names follow the original OLMo config wherever the concept is the same, so that an original
`config.yaml` maps onto these fields directly. Attribute docstrings become the `--help` text (tyro).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

import tyro

from olmo_fn.model_config import ModelConfig  # noqa: F401  (re-exported: the model's part of every config)

MemmapDtype = Literal["uint8", "uint16", "uint32", "uint64"]


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
    """Token files (headerless arrays named .npy), local paths or fsspec URLs (gs://, s3://, https://), for
    example `--data.paths part-0.npy part-1.npy`."""
    paths_file: str | None = None
    """A text file (local or URL) listing the token files, one per line, in order (blank lines and lines
    starting with # are skipped; relative entries are relative to the list's folder); used instead of paths."""
    datasets: dict[str, list[str]] | None = None
    """Named groups of token files, used instead of paths; each instance carries its group's label. On the
    command line a label, then its files: `--data.datasets web web-0.npy web-1.npy`."""
    label_mask_paths: list[str] | None = None
    """One raw bool file per token file, of the same length: False excludes a token from the loss (SFT)."""
    memmap_dtype: MemmapDtype = "uint16"
    """Integer type of the token files."""
    generate_attention_mask: bool = False
    """Give each batch an attention_mask that is False at the pad_token_id positions."""
    generate_doc_lengths: bool = False
    """Intra-document masking: a token attends only within its own document of the instance, a new document
    starting after each EOS token (the original's option of this name; OLMo 3 trains with it)."""
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
    skip_spikes: bool = False
    """Skip an optimizer step whose loss or gradient norm is not finite, or more than skip_spikes_sigma
    standard deviations above its mean over the last skip_spikes_window steps (OLMo-core's SkipStepAdamW): no
    update of the parameters or AdamW state, while the schedule and data go on; logged as optim/step_skipped
    and optim/skipped_steps. Off: a non-finite step stops the run (see olmo_fn/spikes.py)."""
    skip_spikes_window: int = 128
    """Steps whose losses and gradient norms give the mean and standard deviation (skip_spikes)."""
    skip_spikes_sigma: float = 6.0
    """Standard deviations above the window's mean beyond which a step is skipped (skip_spikes)."""
    skip_spikes_min_values: int | None = None
    """Values (the step's own included) the window needs before spikes are skipped; None = max(20, window //
    2), at most window + 1. Non-finite steps are skipped from the first step."""


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
    """Length of the clip warmup, counted in `units` like t_warmup (so in tokens when units='tokens', as in
    the original, despite the name): while progress <= this, the gradient-norm limit is max_grad_norm x
    grad_clip_warmup_factor."""
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
    """Label -> token files; each label reports eval/{label}/CrossEntropyLoss and Perplexity. On the command
    line a label, then its files: `--eval.datasets mine x.npy y.npy` (for several labels use --evaluators
    mine=x.npy,y.npy other=z.npy)."""
    device_eval_batch_size: int = 8
    """Instances per evaluation batch on each device."""
    eval_subset_num_batches: int = -1
    """Batches evaluated per dataset (-1 = all)."""


@dataclass
class EvaluatorConfig:
    """One in-loop evaluator, as an entry of the original's `evaluators:` list: perplexity on token files
    (type lm) or a downstream task scored as the original scores it (type downstream, label = the task)."""

    label: str
    """lm: the name its metrics carry (eval/{label}/CrossEntropyLoss); downstream: the task (piqa, hellaswag,
    mmlu_stem_mc_5shot, arc_easy_rc_5shot, ...; `python tools/evaluate.py --list-tasks` lists them)."""
    type: Literal["lm", "downstream"] = "downstream"
    """lm (perplexity on held-out token files) or downstream (an in-context task)."""
    paths: list[str] | None = None
    """lm: token files, read like the training data."""
    datasets: dict[str, list[str]] | None = None
    """lm: label -> token files, one set of metrics per label (instead of paths)."""
    metric: str | None = None
    """downstream: score with this metric (acc, len_norm, pmi_dc, ce_loss, bpb, f1) instead of the task's."""
    device_eval_batch_size: int | None = None
    """downstream: rows per forward pass; None = eval.device_eval_batch_size (lm evaluators always use it)."""
    subset_num_batches: int | None = None
    """downstream: score only the first subset_num_batches x batch size x data-parallel ranks requests, as the
    original (-1 = all; None = eval.eval_subset_num_batches, which lm evaluators always use)."""


def evaluators_from_specs(specs: Annotated[list[str], tyro.conf.arg(name="")]) -> list[EvaluatorConfig]:
    """Evaluators from the command line: TASK or TASK:METRIC (downstream), LABEL=FILE[,FILE...] (lm)."""
    out = []
    for spec in specs:
        if "=" in spec:
            label, files = spec.split("=", 1)
            out.append(EvaluatorConfig(label, "lm", paths=[f for f in files.split(",") if f]))
        else:
            task, _, metric = spec.partition(":")
            out.append(EvaluatorConfig(task, "downstream", metric=metric or None))
    return out


@dataclass
class TrackingConfig:
    """Where metrics go: the console and an Aim repository."""

    aim: bool = True
    """Record the run in Aim (rank 0)."""
    aim_repo: str | None = None
    """Aim repository folder; None = {save_folder}/aim. Browse it with `python tools/aim_ui.py --repo PATH`."""
    experiment: str | None = None
    """Aim experiment name; None = the run name."""
    system_tracking_interval: int | None = 10
    """Seconds between Aim's system metrics (CPU, memory, GPU); None = off."""
    aim_log_interval: int = 1
    """Steps between the training metrics recorded in Aim and metrics.jsonl (console lines follow
    console_log_interval)."""
    progress_bar: bool | None = None
    """Show a progress bar; None = only when stderr is a terminal (plain log lines otherwise)."""


@dataclass
class ParallelConfig:
    """How the model is spread over the processes: data parallel (FSDP / HSDP), tensor parallel, and what
    each device keeps (activation checkpointing, mixed precision). World size = dp_replicate x dp_shard x tp."""

    dp_replicate: int = 1
    """Data-parallel replicas (HSDP): each replica holds a full copy sharded over dp_shard ranks."""
    dp_shard: int = -1
    """Data-parallel ranks that shard parameters, gradients and optimizer state (FSDP); -1 = the rest of the
    world size."""
    tp: int = 1
    """Tensor-parallel degree: attention heads, MLP width and the vocabulary split over this many ranks
    (ranks of one TP group read the same batch)."""
    sequence_parallel: bool = True
    """With tp > 1: shard the norms and the residual stream over the sequence between the TP regions."""
    loss_parallel: bool = True
    """With tp > 1: keep the head's logits split over the vocabulary and compute the loss across the TP
    ranks, never gathering full logits."""
    activation_checkpointing: Literal["none", "full"] = "none"
    """'full': recompute the blocks' activations in backward instead of keeping them (every
    activation_checkpointing_interval-th block)."""
    activation_checkpointing_interval: int = 1
    """With activation_checkpointing='full': checkpoint every n-th block (1 = all blocks)."""
    float8: bool = False
    """Train the blocks' Linear layers in float8 through torchao (CUDA, SM89+ GPUs only)."""
    fsdp_param_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """dtype FSDP gathers parameters in for compute; 'auto' = bfloat16 on GPUs with precision amp_bf16,
    float32 otherwise. The sharded master copy stays float32."""
    fsdp_reduce_dtype: Literal["float32", "bfloat16"] = "float32"
    """dtype of the gradient reduce-scatter / all-reduce."""
    reshard_after_forward: bool = True
    """Free each block's gathered parameters after its forward and gather them again in backward (FSDP's
    FULL_SHARD); false keeps them until backward (SHARD_GRAD_OP: more memory, one all-gather less)."""


@dataclass
class OriginalTrainerConfig:
    """What the original OLMo trainer (ai2-olmo up to 0.6) did where that differs from what its config says.
    Runs of original YAMLs and the official recipes turn these on, to reproduce what was run; olmo_fn's own
    behaviour is the documented one."""

    builtin_z_loss_multiplier: bool = False
    """Apply z-loss with 1e-4, the original loss function's built-in multiplier, whatever
    auxiliary_loss_multiplier says: the original trainer never passed the configured value to its loss, so its
    runs used 1e-4 (the OLMo-2 configs say 1e-5)."""
    lagged_clip_warmup: bool = False
    """Clip step N with the limit computed at step N-1, and step 1 with the plain max_grad_norm, as the
    original trainer did (it clipped before updating the limit; the learning rate had no such lag)."""


EVALUATORS_HELP = (
    "In-loop evaluators, run at eval_interval (and on load with eval_on_load) after eval.datasets: TASK or "
    "TASK:METRIC for a downstream task, LABEL=FILE[,FILE...] for perplexity, for example `--evaluators piqa "
    "hellaswag:len_norm valid=v-0.npy,v-1.npy`; the official recipes carry the original's lists. Downstream "
    "tasks need tokenizer.identifier and the task data."
)


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
    """torch.compile each transformer block (the embedding, head and loss stay eager; worth it on GPUs, only
    costs time on a CPU)."""
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm to this; None = no clipping."""
    softmax_auxiliary_loss: bool = False
    """Add OLMo's z-loss (auxiliary_loss_multiplier x logsumexp^2) to the loss."""
    auxiliary_loss_multiplier: float = 1e-4
    """z-loss multiplier (OLMo 2: 1e-5)."""
    original_trainer: OriginalTrainerConfig = field(default_factory=OriginalTrainerConfig)
    """The original trainer's behaviours where they differ from its configs (off = olmo_fn's documented ones)."""
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
    """Sharded checkpoints to keep (-1 = all; 0 = write no sharded checkpoint, whatever save_interval says)."""
    save_num_unsharded_checkpoints_to_keep: int = -1
    """Unsharded checkpoints to keep (-1 = all; 0 = write no unsharded checkpoint, not even the final one)."""
    load_path: str | None = None
    """Checkpoint to start from: native, sharded, original OLMo or Hugging Face; local or URL."""
    verify_checkpoint: bool = False
    """Read every file of a sharded load_path once more to check its checksum before loading (sizes are
    always checked; unsharded checkpoints are always verified while they are read, at no extra cost)."""
    reset_trainer_state: bool = False
    """Load only model and optimizer from load_path: step 0, data from the start, schedule from 0."""
    reset_optimizer_state: bool = False
    """Load only the model (and trainer state); the learning rate ramps back up over t_warmup."""
    try_load_latest_save: bool = False
    """Resume from the latest checkpoint in save_folder if there is one (overrides load_path)."""
    stop_at: int | None = None
    """Stop after this step even if max_duration is further."""
    stop_signals: list[str] = field(default_factory=lambda: ["SIGTERM", "SIGUSR1"])
    """Signals that stop the run early (a scheduler's preemption notice): every rank finishes its step, they
    agree on the step, one checkpoint is written (sharded if save_interval is set) and the process exits
    with status 75; rerun with --try_load_latest_save to continue. `--stop_signals` alone: none."""
    eval_interval: int | None = 1000
    """Steps between evaluations (None = only at the end)."""
    eval_on_load: bool = False
    """Also evaluate before the first step (a baseline for the validation loss)."""
    console_log_interval: int = 1
    """Steps between metric log lines."""
    dry_run: bool = False
    """Print the resolved config, parameter count, FLOPs per token and a memory estimate, then exit."""
    evaluators: Annotated[
        list[EvaluatorConfig], tyro.conf.arg(constructor=evaluators_from_specs, help=EVALUATORS_HELP)
    ] = field(default_factory=list)
    """In-loop evaluators (EVALUATORS_HELP says how to give them on the command line)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
