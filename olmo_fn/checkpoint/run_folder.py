"""What a run keeps in its save folder besides the checkpoints themselves: config.yaml, and a clean slate."""

from __future__ import annotations

import re
from typing import Any

import yaml

from olmo_fn.checkpoint import storage

_CHECKPOINT_ENTRY = re.compile(r"^(step\d+(-unsharded)?(-tmp|-old-tmp-\w+)?|latest|latest-unsharded)$")


def write_config(save_folder: str, config: dict[str, Any]) -> str:
    """Write the run's full config as {save_folder}/config.yaml (atomically where the filesystem allows)."""
    url = storage.join(save_folder, "config.yaml")
    storage.write_bytes(url, yaml.safe_dump(config, sort_keys=False).encode())
    return url


def remove_checkpoints(save_folder: str) -> list[str]:
    """Delete every checkpoint folder, unfinished save and latest pointer of a save folder (--save_overwrite)."""
    removed = [name for name in storage.list_names(save_folder) if _CHECKPOINT_ENTRY.match(name)]
    for name in sorted(removed, key=lambda n: not n.startswith("latest")):  # pointers first
        storage.remove(storage.join(save_folder, name))
    return removed
