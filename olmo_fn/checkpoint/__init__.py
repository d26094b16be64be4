"""Checkpoints: olmo_fn's native (unsharded) and DCP (sharded) formats, original OLMo and Hugging Face folders.

Every path may be an fsspec URL (local, gs://, s3://, https:// for reading).
"""

from olmo_fn.checkpoint.commit import find_latest, save_checkpoint
from olmo_fn.checkpoint.load import (
    LoadedCheckpoint,
    config_of_checkpoint,
    detect_kind,
    load_checkpoint,
    model_config_of_checkpoint,
)

__all__ = [
    "LoadedCheckpoint",
    "config_of_checkpoint",
    "detect_kind",
    "find_latest",
    "load_checkpoint",
    "model_config_of_checkpoint",
    "save_checkpoint",
]
