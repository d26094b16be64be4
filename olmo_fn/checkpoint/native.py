"""olmo_fn's unsharded checkpoint folder: safetensors + JSON + YAML, and a manifest written last.

config.yaml          the full training config (yaml.safe_dump of a plain dict)
model.safetensors    parameters by olmo_fn name (full, unsharded tensors)
optim.safetensors    optimizer tensors by flat name ("state.{param}.exp_avg"); the rest (param groups,
                     non-tensor state) as JSON in its metadata
train.json           trainer state without its tensors; train.safetensors: its tensors (RNG states)
manifest.json        kind, step, and size + checksum of every other file; its presence marks completeness

Saving gathers the full state to rank 0, which streams it into the files (hashing as it writes); loading
is a Source read tensor by tensor, each file verified against the manifest on the way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_state_dict

from olmo_fn.checkpoint import storage
from olmo_fn.checkpoint.manifest import (
    check_files,
    read_config,
    read_manifest,
    read_trainer_state,
    split_optim,
    write_config_yaml,
    write_manifest,
    write_trainer_state,
)
from olmo_fn.checkpoint.source import Entry, Source
from olmo_fn.checkpoint.tensors import SafetensorsReader, decode_state, strict_json, write_safetensors
from olmo_fn.errors import CheckpointError

_OPTIM_META = "olmo_fn_optim"


@dataclass
class Content:
    """What a native folder holds, in memory: full model tensors, flat optimizer state, trainer state, config."""

    model: dict[str, torch.Tensor]
    optim: dict[str, Any] | None
    trainer_state: dict[str, Any] | None
    config: dict[str, Any] | None


def gather_full_state(
    model: nn.Module, optimizer: torch.optim.Optimizer | None
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Full (unsharded, CPU) model state and flat optimizer state; collective under torch.distributed."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True, flatten_optimizer_state_dict=True)
    if optimizer is None:
        return get_model_state_dict(model, options=options), None
    return get_state_dict(model, optimizer, options=options)


def write_native_dir(url: str, content: Content, step: int, kind: str = "unsharded") -> None:
    """Write every file of a native folder at url, the manifest last."""
    files: dict[str, dict[str, Any]] = {}
    if content.config is not None:
        files["config.yaml"] = write_config_yaml(url, content.config)
    files["model.safetensors"] = write_safetensors(storage.join(url, "model.safetensors"), content.model)
    if content.optim is not None:
        tensors, rest = split_optim(content.optim)
        meta = {_OPTIM_META: json.dumps(rest)}
        files["optim.safetensors"] = write_safetensors(storage.join(url, "optim.safetensors"), tensors, meta)
    if content.trainer_state is not None:
        files.update(write_trainer_state(url, "train", content.trainer_state))
    write_manifest(url, kind, step, files)


def native_source(url: str, with_optim: bool = True) -> Source:
    """A native folder as a Source: model tensors, then optimizer tensors, each file checked on the way."""
    manifest = read_manifest(url)
    check_files(url, manifest)
    names = ["model.safetensors"]
    if with_optim and "optim.safetensors" in manifest["files"]:
        names.append("optim.safetensors")
    if "model.safetensors" not in manifest["files"]:
        raise CheckpointError(
            f"{url}: model.safetensors is not listed in {storage.MANIFEST}; the folder was altered"
        )
    stack = ExitStack()
    try:
        readers = {}
        for name, prefix in zip(names, ("model.", "optim.")):
            file_url = storage.join(url, name)
            readers[prefix] = (
                SafetensorsReader(file_url, stack.enter_context(storage.open_read(file_url))),
                name,
            )
        rest = _optim_rest(readers["optim."][0]) if "optim." in readers else {}
        trainer = read_trainer_state(url, "train", manifest) if "train.json" in manifest["files"] else None
        config = read_config(url, manifest)
    except BaseException:
        stack.close()  # the files opened so far
        raise
    entries = [
        Entry(prefix + n, *reader.shape_and_dtype(n))
        for prefix, (reader, _) in readers.items()
        for n in reader.infos
    ]

    def tensors() -> Iterator[torch.Tensor]:
        with stack:
            for reader, name in readers.values():
                for tensor_name in reader.infos:
                    yield reader.read(tensor_name)
                reader.verify(manifest["files"][name])

    return Source(entries, tensors, rest, trainer, config, "unsharded")


def _optim_rest(reader: SafetensorsReader) -> dict[str, Any]:
    """The optimizer's non-tensor state, kept as JSON in optim.safetensors' metadata."""
    rest = strict_json(
        reader.metadata.get(_OPTIM_META, "{}").encode(), f"{reader.url}: metadata {_OPTIM_META}"
    )
    try:
        return {k: decode_state(v, {}) for k, v in rest.items()}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(
            f"{reader.url}: metadata {_OPTIM_META} is not what olmo_fn writes ({e!r})"
        ) from None
