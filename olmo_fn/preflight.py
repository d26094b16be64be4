"""Checks before work: everything a run will touch is validated before a parameter is allocated.

`preflight(cfg, world_size)` opens the data and evaluation files (sizes, dtype, a sample of token ids
against the vocabulary), checks the batch arithmetic against the data-parallel size, the parallel degrees
against the world size, the save-folder policy, the checkpoint to load and the tokenizer. Every problem
found is one line naming the field and the fix; they are raised together as one ConfigError. The dry run
runs the same checks (without the data when none is given).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from olmo_fn import checkpoint as ckpt
from olmo_fn.config import TrainConfig
from olmo_fn.data.files import tokenizer_notes
from olmo_fn.data.memmap import TokenDataset, build_token_dataset
from olmo_fn.errors import CheckpointError, ConfigError, OlmoFnError
from olmo_fn.preemption import signal_numbers
from olmo_fn.spikes import check_spike_config

# ModelConfig fields that decide the parameters' shapes: a checkpoint must agree on them to load.
_SHAPE_FIELDS = (
    "d_model n_heads n_kv_heads n_layers mlp_hidden_size mlp_ratio vocab_size embedding_size weight_tying "
    "layer_norm_with_affine attention_layer_norm attention_layer_norm_with_affine"
).split()


@dataclass
class Checked:
    """What preflight opened, handed to the run so that nothing is opened twice."""

    dataset: TokenDataset | None = None
    eval_sets: dict[str, TokenDataset] = field(default_factory=dict)
    downstream: list = field(default_factory=list)
    """The downstream evaluators (eval.evaluators.DownstreamEval), their requests built."""
    degrees: tuple[int, int, int] = (1, 1, 1)
    notes: list[str] = field(default_factory=list)
    """Warnings about the data that do not stop the run (token files from different tokenizers)."""


class _Problems:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def check(self, fn, *args):
        try:
            return fn(*args)
        except OlmoFnError as e:
            self.lines.append(str(e))
            return None


def preflight(cfg: TrainConfig, world_size: int, *, with_data: bool = True) -> Checked:
    """Validate a run before anything is built; ConfigError listing every problem (one line each)."""
    problems, checked = _Problems(), Checked()
    degrees = problems.check(_degrees, cfg, world_size)
    if degrees is not None:
        checked.degrees = degrees
        problems.check(_batch, cfg, degrees)
    if with_data:
        checked.dataset = problems.check(_train_data, cfg)
        checked.eval_sets = problems.check(_eval_data, cfg) or {}
        datasets = [checked.dataset, *checked.eval_sets.values()]
        checked.notes = tokenizer_notes([f.path for d in datasets if d is not None for f in d.files])
    checked.downstream = problems.check(_downstream, cfg) or []
    problems.check(check_save_folder, cfg)
    problems.check(_load_path, cfg)
    problems.check(_tokenizer, cfg)
    problems.check(signal_numbers, cfg.stop_signals)
    problems.check(check_spike_config, cfg.optimizer)
    if problems.lines:
        raise ConfigError("\n".join(dict.fromkeys(problems.lines)))
    return checked


def check_layout(cfg: TrainConfig, world_size: int) -> None:
    """The parallel degrees and batch sizes against `world_size` processes (what a launcher checks before it
    submits a job); ConfigError listing the problems."""
    problems = _Problems()
    degrees = problems.check(_degrees, cfg, world_size)
    if degrees is not None:
        problems.check(_batch, cfg, degrees)
    if problems.lines:
        raise ConfigError("\n".join(problems.lines))


def open_data(cfg: TrainConfig) -> Checked:
    """The training and evaluation datasets (what a rank other than the checking one needs)."""
    return Checked(_train_data(cfg), _eval_data(cfg), _downstream(cfg))


def _degrees(cfg: TrainConfig, world_size: int) -> tuple[int, int, int]:
    from olmo_fn.parallel import check_tp, resolve_degrees

    degrees = resolve_degrees(cfg.parallel, world_size)
    if degrees[2] > 1:
        check_tp(cfg.model, degrees[2])
    return degrees


def _batch(cfg: TrainConfig, degrees: tuple[int, int, int]) -> None:
    dp = degrees[0] * degrees[1]
    if cfg.global_train_batch_size % dp:
        raise ConfigError(
            f"global_train_batch_size: {cfg.global_train_batch_size} does not divide over {dp} data-parallel "
            f"ranks; use a multiple of {dp}"
        )
    per_rank = cfg.global_train_batch_size // dp
    if cfg.device_train_microbatch_size < per_rank and per_rank % cfg.device_train_microbatch_size:
        raise ConfigError(
            f"device_train_microbatch_size: {cfg.device_train_microbatch_size} does not divide the "
            f"{per_rank} instances each data-parallel rank gets per step; use a divisor of {per_rank} (a larger "
            "value means one micro-batch of them all)"
        )


def _train_data(cfg: TrainConfig) -> TokenDataset:
    if not (cfg.data.paths or cfg.data.paths_file or cfg.data.datasets):
        raise ConfigError(
            "data.paths is empty: pass the token files, e.g. --data.paths=[part-0.npy,part-1.npy]"
        )
    dataset = build_token_dataset(
        cfg.data,
        seq_len=cfg.model.max_sequence_length,
        vocab_size=cfg.model.vocab_size,
        pad_token_id=cfg.model.pad_token_id,
        eos_token_id=cfg.model.eos_token_id,
    )
    if len(dataset) < cfg.global_train_batch_size:
        raise ConfigError(
            f"data.paths: {len(dataset)} instances of {cfg.model.max_sequence_length} tokens are fewer than one "
            f"global batch (global_train_batch_size={cfg.global_train_batch_size}); add data or lower the batch size"
        )
    return dataset


def _eval_data(cfg: TrainConfig) -> dict[str, TokenDataset]:
    from olmo_fn.eval import build_eval_datasets
    from olmo_fn.eval.evaluators import lm_eval_paths

    try:
        return build_eval_datasets(lm_eval_paths(cfg), cfg.data, cfg.model)
    except OlmoFnError as e:
        raise ConfigError(f"eval.datasets: {e}") from e


def _downstream(cfg: TrainConfig) -> list:
    from olmo_fn.eval.evaluators import build_downstream

    return build_downstream(cfg)


def check_save_folder(cfg: TrainConfig) -> None:
    """A fresh run may not write into a folder holding checkpoints unless told to (--save_overwrite), and
    --save_overwrite may not clear the folder that holds the run's own load_path."""
    if cfg.save_overwrite and not cfg.try_load_latest_save and cfg.load_path:
        if _inside(cfg.load_path, cfg.save_folder):
            raise ConfigError(
                f"load_path: {cfg.load_path} is in save_folder {cfg.save_folder}, which --save_overwrite would "
                f"clear before loading it; save this run elsewhere, e.g. --save_folder={cfg.save_folder.rstrip('/')}-ft"
            )
    if cfg.save_overwrite or cfg.try_load_latest_save:
        return
    existing = ckpt.find_latest(cfg.save_folder)
    if existing is not None:
        raise ConfigError(
            f"save_folder: {cfg.save_folder} already holds checkpoints ({existing}); pass --save_overwrite to "
            "replace them, or --try_load_latest_save to resume that run"
        )


def _inside(path: str, folder: str) -> bool:
    """Whether `path` is `folder` or lies in it (local paths compared after resolving links)."""
    if "://" in path or "://" in folder:
        path, folder = path.rstrip("/"), folder.rstrip("/")
    else:
        path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder + "/")


def _load_path(cfg: TrainConfig) -> None:
    if not cfg.load_path:
        return
    try:
        saved = ckpt.model_config_of_checkpoint(cfg.load_path)
    except CheckpointError as e:
        raise ConfigError(f"load_path: {e}") from e
    names = {f.name for f in fields(saved)}
    for name in _SHAPE_FIELDS:
        if name in names and getattr(saved, name) != getattr(cfg.model, name):
            raise ConfigError(
                f"load_path: the checkpoint's model.{name} is {getattr(saved, name)!r} but the run's is "
                f"{getattr(cfg.model, name)!r}; pass --model.{name}={getattr(saved, name)} or another checkpoint"
            )
    if saved.padded_vocab_size != cfg.model.padded_vocab_size:
        raise ConfigError(
            f"load_path: the checkpoint's embedding has {saved.padded_vocab_size} rows, the run's "
            f"{cfg.model.padded_vocab_size}; set model.vocab_size / model.embedding_size as the checkpoint has them"
        )


def _tokenizer(cfg: TrainConfig) -> None:
    identifier = cfg.tokenizer.identifier
    if not identifier:
        return
    from olmo_fn.eval.evaluators import read_tokenizer
    from olmo_fn.eval.task_data import packaged_tokenizer

    if identifier.startswith("tokenizers/") and packaged_tokenizer(identifier) is None:
        return  # a packaged name without its package: only downstream evaluators need it (checked there)
    tok = read_tokenizer(identifier)
    size = tok.get_vocab_size(with_added_tokens=True)
    if size > cfg.model.vocab_size:
        raise ConfigError(
            f"tokenizer.identifier: the tokenizer has {size} tokens but model.vocab_size is "
            f"{cfg.model.vocab_size}; use the model's tokenizer or raise model.vocab_size"
        )
