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
from olmo_fn.checkpoint.tensors import (
    decode_state,
    encode_state,
    load_safetensors,
    strict_json,
    write_safetensors,
)
from olmo_fn.errors import CheckpointError

FORMAT = "olmo_fn"
KINDS = ("unsharded", "sharded")


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
    tree = strict_json(read_checked(url, f"{stem}.json", manifest), storage.join(url, f"{stem}.json"))
    name = storage.join(url, f"{stem}.safetensors")
    tensors, _ = load_safetensors(read_checked(url, f"{stem}.safetensors", manifest), name)
    try:
        return decode_state(tree, tensors)
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as e:
        raise CheckpointError(f"{url}/{stem}.json: not a trainer state olmo_fn wrote ({e!r})") from None


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
    return parse_manifest(
        storage.read_bytes(storage.join(url, storage.MANIFEST)), storage.join(url, storage.MANIFEST)
    )


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    """A manifest's bytes as its dict, every field checked (a known kind, a step, and for each file a plain
    relative name with a size and a checksum); CheckpointError naming `where` (the file) otherwise."""
    manifest = strict_json(data, where)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f'{where}: not an olmo_fn manifest (no "format": "{FORMAT}")')
    if manifest.get("kind") not in KINDS or not _is_count(manifest.get("step")):
        raise CheckpointError(f"{where}: kind or step missing or wrong (kind is one of {', '.join(KINDS)})")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise CheckpointError(f'{where}: has no "files" object')
    for name, entry in files.items():
        if not name or name.startswith("/") or "\\" in name or {"", ".", ".."} & set(name.split("/")):
            raise CheckpointError(f"{where}: lists {name[:80]!r}, not a path inside the checkpoint")
        if name == storage.MANIFEST:
            raise CheckpointError(f"{where}: lists itself")
        ok = isinstance(entry, dict) and _is_count(entry.get("size")) and isinstance(entry.get("xxh3"), str)
        if not ok:
            raise CheckpointError(
                f'{where}: the entry of {name[:80]!r} is not {{"size": bytes, "xxh3": checksum}}'
            )
    return manifest


def check_files(url: str, manifest: dict[str, Any]) -> None:
    """The folder holds exactly the files its manifest lists, each of its listed size (a listing, no
    reading). A folder that cannot be listed (https) has each listed file's size asked instead, and files
    the manifest does not list go unnoticed there."""
    sizes = storage.list_files(url)
    listed = bool(sizes) and not url.startswith(("http://", "https://"))  # a listing shows the manifest too
    for name, entry in manifest["files"].items():
        if name not in sizes:
            try:
                sizes[name] = storage.size(storage.join(url, name))
            except (FileNotFoundError, OSError):
                raise CheckpointError(
                    f"{url}: {name} is listed in {storage.MANIFEST} but missing; the checkpoint is incomplete: "
                    "restore the file or load another checkpoint"
                ) from None
        if sizes[name] != entry["size"]:
            raise CheckpointError(
                f"{url}: {name} has {sizes[name]} bytes, {storage.MANIFEST} says {entry['size']}; the file is "
                "corrupt or was changed after saving: restore it or load another checkpoint"
            )
    extra = sorted(set(sizes) - set(manifest["files"]) - {storage.MANIFEST}) if listed else []
    if extra:
        raise CheckpointError(
            f"{url}: {extra[0]} is not listed in {storage.MANIFEST}; the folder was altered after saving: "
            "remove the file or load another checkpoint"
        )


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
