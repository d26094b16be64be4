"""The original OLMo's YAML configs: read as its OmegaConf loader reads them, mapped to olmo_fn's
TrainConfig and back (see `read_original_config`, `train_config_from_original`)."""

from __future__ import annotations

from olmo_fn.original.loader import apply_overrides, load_yaml, merge_with_defaults, resolve
from olmo_fn.original.mapping import (
    FIELD_NOTES,
    IGNORED,
    MAPPED,
    model_config_from_original,
    train_config_from_original,
)
from olmo_fn.original.to_original import original_from_train_config


def read_original_config(
    text: str | bytes, overrides: list[str] | None = None, where: str = "config"
) -> dict:
    """An original TrainConfig YAML as the original reads it: defaults <- file <- overrides, resolved."""
    raw = load_yaml(text, where)
    tree = merge_with_defaults(raw if raw is not None else {})
    return resolve(apply_overrides(tree, overrides or []))


__all__ = [
    "FIELD_NOTES",
    "IGNORED",
    "MAPPED",
    "apply_overrides",
    "load_yaml",
    "merge_with_defaults",
    "model_config_from_original",
    "original_from_train_config",
    "read_original_config",
    "resolve",
    "train_config_from_original",
]
