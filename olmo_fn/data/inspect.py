"""Which exact instances (token ids and text) made up a training batch: the README's inspection recipe.

Works from a run's save folder (config.yaml + train_data/global_indices.npy), from a config file (ours or
the original OLMo's) with a global order file or URL, or from an experiment file's config() recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import fsspec
import numpy as np

from olmo_fn.config import DataConfig
from olmo_fn.data.memmap import TokenDataset, build_token_dataset
from olmo_fn.data.order import batch_indices, build_global_indices, global_indices_path, read_global_indices
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


def batch_instances(
    dataset: TokenDataset, global_indices: np.ndarray, batch: int, global_batch_size: int
) -> list[dict[str, Any]]:
    """Each instance of global batch `batch`: its index, metadata and token ids."""
    ids = batch_indices(global_indices, batch, global_batch_size)
    if len(ids) == 0:
        raise ConfigError(f"batch {batch} is past the end of the order ({len(global_indices)} instances)")
    out = []
    for index in ids.tolist():
        item = dataset[index]
        out.append({"index": index, "metadata": item["metadata"], "input_ids": item["input_ids"].tolist()})
    return out


def inspect_batch(
    run: RunData, batch: int, *, order_path: str | None = None, epoch: int = 0, world_size: int = 1
) -> list[dict[str, Any]]:
    """The instances of a batch of a run, from its global order file or else from seed and epoch."""
    dataset = build_token_dataset(run.data, seq_len=run.seq_len, vocab_size=run.vocab_size)
    if order_path is not None:
        order = read_global_indices(order_path)
    else:
        order = build_global_indices(
            len(dataset), seed=run.seed, epoch=epoch, world_size=world_size, drop_last=run.data.drop_last
        )
    return batch_instances(dataset, order, batch, run.global_batch_size)


def save_folder_order(save_folder: str) -> str | None:
    """The save folder's global order file, if it has one."""
    path = global_indices_path(save_folder)
    fs, stripped = fsspec.core.url_to_fs(path)
    return path if fs.exists(stripped) else None
