"""What a run keeps in its save folder besides the checkpoints themselves: config.yaml, and a clean slate."""

from __future__ import annotations

import re
from typing import Any

from olmo_fn.checkpoint import storage

STEP_DIR = re.compile(r"^step(\d+)(-unsharded)?$")  # a checkpoint: step{N} (sharded), step{N}-unsharded
TMP_DIR = re.compile(r"^step\d+(-unsharded)?(-tmp|-old-tmp-\w+)$")  # a save in progress, or one replaced
POINTERS = ("latest", "latest-unsharded")


def is_checkpoint_entry(name: str) -> bool:
    """Whether a save folder's entry belongs to its checkpoints (a checkpoint, a save in progress, a pointer)."""
    return bool(STEP_DIR.match(name) or TMP_DIR.match(name)) or name in POINTERS


def write_config(save_folder: str, config: dict[str, Any]) -> str:
    """Write the run's full config as {save_folder}/config.yaml (atomically where the filesystem allows)."""
    from olmo_fn.checkpoint.manifest import write_config_yaml

    write_config_yaml(save_folder, config)
    return storage.join(save_folder, "config.yaml")


def remove_checkpoints(save_folder: str) -> list[str]:
    """Delete every checkpoint folder, unfinished save and latest pointer of a save folder (--save_overwrite)."""
    removed = [name for name in storage.list_names(save_folder) if is_checkpoint_entry(name)]
    for name in sorted(removed, key=lambda n: not n.startswith("latest")):  # pointers first
        storage.remove(storage.join(save_folder, name))
    return removed
