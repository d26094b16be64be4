"""Which exact instances (token ids and text) made up a training batch: the README's inspection recipe.

Works from a run's save folder (config.yaml and each epoch's train_data/global_indices_epoch{E}.npy), from a
config file (ours or the original OLMo's) with a global order file or URL, or from an experiment file's
config() recipe; an order no file holds is computed from seed + epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import fsspec

from olmo_fn.config import DataConfig
from olmo_fn.data.memmap import build_token_dataset
from olmo_fn.data.order import (
    batch_indices,
    batches_per_epoch,
    build_global_indices,
    epoch_indices_path,
    global_indices_path,
    read_global_indices,
    total_size,
)
from olmo_fn.errors import ConfigError


@dataclass
class RunData:
    """What inspecting a run's data needs, read from its config."""

    data: DataConfig
    seq_len: int
    global_batch_size: int
    seed: int
    tokenizer: str | None = None
    vocab_size: int | None = None


def load_config_dict(path: str) -> dict[str, Any]:
    """A config.yaml as a plain dict."""
    from olmo_fn.original import load_yaml  # the original's scalar rules (`1e-6` is a float)

    try:
        with fsspec.open(path, "rt", encoding="utf-8") as f:
            cfg = load_yaml(f.read(), path)
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: config file not found") from e
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: not a YAML mapping of config sections")
    return cfg


def data_config_from_dict(raw: dict[str, Any]) -> DataConfig:
    """A DataConfig from a config's `data` section (olmo_fn's or the original's), through the one typed reader
    of configs: every value checked against its field. Keys olmo_fn does not use are dropped by name first
    (the original's sections carry some), so only those are not an error."""
    from olmo_fn.config_io import config_from_dict

    known = {f.name for f in fields(DataConfig)}
    values = {k: v for k, v in raw.items() if k in known}
    if values.get("paths") is None:
        values["paths"] = []
    return config_from_dict(DataConfig, values, "data.")


def run_data_from_dict(cfg: dict[str, Any], source: str) -> RunData:
    """RunData from a full config dict (the sections data, model, seed, global_train_batch_size, tokenizer)."""
    try:
        data = data_config_from_dict(cfg.get("data") or {})
        model = cfg["model"]
        seed = data.seed if data.seed is not None else cfg.get("seed", 0)
        tokenizer = cfg.get("tokenizer") or {}
        return RunData(
            data=data,
            seq_len=int(model["max_sequence_length"]),
            global_batch_size=int(cfg["global_train_batch_size"]),
            seed=int(seed),
            tokenizer=tokenizer.get("identifier") if isinstance(tokenizer, dict) else tokenizer,
            vocab_size=model.get("vocab_size"),
        )
    except (KeyError, TypeError) as e:
        raise ConfigError(
            f"{source}: missing or malformed config entry {e}; pass it on the command line"
        ) from e


@dataclass
class BatchPosition:
    """Where a global batch lies: batch `batch` (0-based) of epoch `epoch`'s order, trained at global step `step`
    (1-based, as the run's log counts; step N trains the N-th batch of the whole run; None: a partial batch
    that drop_last leaves untrained)."""

    epoch: int
    batch: int
    step: int | None


def locate(
    step: int | None, epoch: int, batch: int | None, order_size: int, data: DataConfig, global_batch_size: int
) -> BatchPosition:
    """The position of global step `step`, or of batch `batch` of epoch `epoch` (exactly one of the two), in
    epochs of `order_size` instances."""
    trained = batches_per_epoch(order_size, global_batch_size, data.drop_last)
    if (step is None) == (batch is None):
        raise ConfigError("give exactly one of --step (a global step of the run) and --batch (with --epoch)")
    if step is not None:
        if step < 1:
            raise ConfigError(f"--step {step}: steps count from 1 (step 1 trains batch 0 of epoch 0)")
        if trained == 0:
            raise ConfigError(
                f"an epoch holds {order_size} instances, fewer than a global batch of {global_batch_size}: "
                "the run trains no step; use --batch 0 to see them"
            )
        epoch, batch = divmod(step - 1, trained)
    held = -(-order_size // global_batch_size)
    if not 0 <= batch < held:
        raise ConfigError(
            f"--batch {batch}: an epoch has batches 0 to {held - 1}; use --step for a global step of the run"
        )
    if epoch < 0:
        raise ConfigError(f"--epoch {epoch}: epochs count from 0")
    return BatchPosition(epoch, batch, epoch * trained + batch + 1 if batch < trained else None)


def _file(path: str) -> str | None:
    from olmo_fn.checkpoint import storage

    return path if storage.exists(path) else None


def saved_order(save_folder: str, epoch: int) -> str | None:
    """The save folder's order file of an epoch: global_indices_epoch{E}.npy, or for epoch 0 of a folder
    without it (the original OLMo's, or an older run's) global_indices.npy."""
    kept = _file(epoch_indices_path(save_folder, epoch))
    if kept is None and epoch == 0 and _file(epoch_indices_path(save_folder, 1)) is None:
        return _file(global_indices_path(save_folder))
    return kept


def order_length(run: RunData, num_instances: int, save_folder: str | None, world_size: int) -> int:
    """Instances in every epoch's order: the save folder's file length (it knows the run's world size),
    else computed from the dataset and world size."""
    from olmo_fn.checkpoint import storage

    path = save_folder and _file(global_indices_path(save_folder))
    if path:
        return storage.size(path) // 4
    return total_size(num_instances, world_size, run.data.drop_last)


def inspect_batch(
    run: RunData,
    *,
    step: int | None = None,
    epoch: int = 0,
    batch: int | None = None,
    save_folder: str | None = None,
    order_path: str | None = None,
    world_size: int = 1,
) -> list[dict[str, Any]]:
    """The instances of one global batch (by global step, or by epoch and batch), each with its index,
    metadata, token ids, label mask (SFT data), and position (epoch, batch, step)."""
    dataset = build_token_dataset(run.data, seq_len=run.seq_len, vocab_size=run.vocab_size)
    if order_path is not None:
        order = read_global_indices(order_path)
        where = locate(step, epoch, batch, len(order), run.data, run.global_batch_size)
    else:
        size = order_length(run, len(dataset), save_folder, world_size)
        where = locate(step, epoch, batch, size, run.data, run.global_batch_size)
        path = save_folder and saved_order(save_folder, where.epoch)
        if path:
            order = read_global_indices(path)
        else:
            order = build_global_indices(
                len(dataset),
                seed=run.seed,
                epoch=where.epoch,
                world_size=world_size,
                drop_last=run.data.drop_last,
            )
    out = []
    position = {"step": where.step, "epoch": where.epoch, "batch": where.batch}
    for index in batch_indices(order, where.batch, run.global_batch_size).tolist():
        item = dataset[index]
        inst = {
            "index": index,
            **position,
            "metadata": item["metadata"],
            "input_ids": item["input_ids"].tolist(),
        }
        if "label_mask" in item:
            inst["label_mask"] = item["label_mask"].tolist()
        out.append(inst)
    return out
