"""What olmo_fn's own folders (unsharded and sharded) share: the manifest written last, files checked
against it, config.yaml, and the trainer state as JSON + safetensors (no pickle).

manifest.json        {"format": "olmo_fn", "version": 1, "kind", "step", "files": {name: {size, xxh3}}}
"""

from __future__ import annotations

import json
from typing import Any

import torch
import yaml

from olmo_fn.checkpoint import storage
from olmo_fn.checkpoint.tensors import decode_state, encode_state, load_safetensors, write_safetensors
from olmo_fn.errors import CheckpointError

FORMAT = "olmo_fn"


def split_optim(osd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Flat optimizer state -> (tensors, JSON-able rest)."""
    tensors = {k: v for k, v in osd.items() if isinstance(v, torch.Tensor)}
    rest = {k: encode_state(v) for k, v in osd.items() if not isinstance(v, torch.Tensor)}
    return tensors, rest


def write_bytes_entry(url: str, name: str, data: bytes) -> dict[str, Any]:
    """Write url/name; returns its manifest entry."""
    storage.write_bytes(storage.join(url, name), data)
    return storage.entry(data)


def write_trainer_state(url: str, stem: str, state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{stem}.json + {stem}.safetensors holding a trainer state; returns their manifest entries."""
    tensors: dict[str, torch.Tensor] = {}
    tree = encode_state(state, tensors)
    return {
        f"{stem}.json": write_bytes_entry(url, f"{stem}.json", json.dumps(tree).encode()),
        f"{stem}.safetensors": write_safetensors(storage.join(url, f"{stem}.safetensors"), tensors),
    }


def read_trainer_state(url: str, stem: str, manifest: dict[str, Any] | None) -> dict[str, Any]:
    """Inverse of write_trainer_state, verified against the manifest when given."""
    tree = json.loads(read_checked(url, f"{stem}.json", manifest))
    tensors, _ = load_safetensors(read_checked(url, f"{stem}.safetensors", manifest), url)
    return decode_state(tree, tensors)


def write_manifest(url: str, kind: str, step: int, files: dict[str, dict[str, Any]]) -> None:
    """The completion marker: written after every other file."""
    manifest = {"format": FORMAT, "version": 1, "kind": kind, "step": step, "files": files}
    storage.write_bytes(storage.join(url, storage.MANIFEST), json.dumps(manifest, indent=1).encode())


def read_manifest(url: str) -> dict[str, Any]:
    """The manifest of a complete olmo_fn checkpoint folder."""
    if not storage.exists(storage.join(url, storage.MANIFEST)):
        raise CheckpointError(
            f"{url}: no {storage.MANIFEST}; the save did not finish (or this is not an olmo_fn checkpoint): "
            "load an earlier checkpoint"
        )
    manifest = storage.read_json(storage.join(url, storage.MANIFEST))
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{url}/{storage.MANIFEST}: not an olmo_fn manifest")
    return manifest


def read_checked(url: str, name: str, manifest: dict[str, Any] | None) -> bytes:
    """A file's bytes, verified against its manifest entry."""
    data = storage.read_bytes(storage.join(url, name))
    if manifest is not None:
        if name not in manifest["files"]:
            raise CheckpointError(
                f"{url}: {name} is not listed in {storage.MANIFEST}; the folder was altered"
            )
        storage.check_file(storage.join(url, name), data, manifest["files"][name])
    return data


def read_config(url: str, manifest: dict[str, Any] | None) -> dict[str, Any] | None:
    """config.yaml of a native or sharded folder as a dict (None when absent)."""
    if manifest is not None and "config.yaml" not in manifest["files"]:
        return None
    return yaml.safe_load(read_checked(url, "config.yaml", manifest))


def write_config_yaml(url: str, config: dict[str, Any]) -> dict[str, Any]:
    """config.yaml of a checkpoint folder; returns its manifest entry."""
    return write_bytes_entry(url, "config.yaml", yaml.safe_dump(config, sort_keys=False).encode())
