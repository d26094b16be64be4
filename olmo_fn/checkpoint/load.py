"""Loading any checkpoint olmo_fn reads, with the kind detected from the folder's files.

manifest.json                          olmo_fn native ('unsharded') or DCP ('sharded')
config.json                            Hugging Face transformers folder ('hf')
config.yaml + model.pt|model.safetensors   original OLMo unsharded folder ('olmo')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from olmo_fn.checkpoint import storage
from olmo_fn.checkpoint.dcp import load_sharded_dir, read_sharded_full, trainer_state_and_config
from olmo_fn.checkpoint.hf_dir import hf_config_json, hf_source, read_hf_config
from olmo_fn.checkpoint.manifest import read_config, read_manifest
from olmo_fn.checkpoint.native import Content, native_source, write_native_dir
from olmo_fn.checkpoint.olmo_dir import olmo_config, olmo_source
from olmo_fn.checkpoint.source import Source, apply_source, collect
from olmo_fn.config import ModelConfig
from olmo_fn.errors import CheckpointError, ConfigError

Kind = Literal["unsharded", "sharded", "olmo", "hf"]


@dataclass
class LoadedCheckpoint:
    """What load_checkpoint found besides the weights it loaded into the model."""

    trainer_state: dict[str, Any] | None
    config: dict[str, Any] | None
    kind: str


def detect_kind(path: str) -> Kind:
    """Which kind of checkpoint folder path is; CheckpointError saying what was expected otherwise."""
    if storage.exists(storage.join(path, storage.MANIFEST)):
        return read_manifest(path)["kind"]
    if storage.exists(storage.join(path, "config.json")):
        return "hf"
    if storage.exists(storage.join(path, "config.yaml")):
        if any(storage.exists(storage.join(path, f)) for f in ("model.safetensors", "model.pt")):
            return "olmo"
        if storage.exists(storage.join(path, "model_and_optim")):
            raise CheckpointError(
                f"{path}: an unfinished olmo_fn save (no manifest.json) or an original OLMo sharded checkpoint, "
                "which olmo_fn cannot read: load an earlier checkpoint, or unshard it with the original's tools"
            )
    raise CheckpointError(
        f"{path}: not a checkpoint olmo_fn recognises (expected manifest.json, config.json for Hugging Face, or "
        "config.yaml with model.pt/model.safetensors for original OLMo); an unfinished save has no manifest.json"
    )


_SOURCES = {"unsharded": native_source, "olmo": olmo_source, "hf": hf_source}


def open_source(path: str, with_optim: bool = True) -> Source:
    """A full-state checkpoint (unsharded, original OLMo, Hugging Face) as a stream of named tensors."""
    path = path.rstrip("/")
    kind = detect_kind(path)
    if kind not in _SOURCES:
        raise CheckpointError(f"{path}: a sharded checkpoint is not a full-state source; unshard it first")
    return _SOURCES[kind](path, with_optim)


def load_checkpoint(
    path: str, model: nn.Module, optimizer: torch.optim.Optimizer | None, *, verify: bool = False
) -> LoadedCheckpoint:
    """Load a checkpoint of any kind into model (and optimizer, when given and saved) on any mesh.

    Collective under torch.distributed. Full-state kinds are read by one rank per node and streamed tensor by
    tensor (checksums of olmo_fn files checked on the way); sharded ones are read by every rank, each its
    own slices, with sizes checked, and every checksum too when `verify`.
    """
    path = path.rstrip("/")
    kind = detect_kind(path)
    if kind == "sharded":
        trainer_state, config = load_sharded_dir(path, model, optimizer, verify=verify)
        return LoadedCheckpoint(trainer_state, config, kind)
    header = apply_source(lambda with_optim: _SOURCES[kind](path, with_optim), model, optimizer)
    return LoadedCheckpoint(header.trainer_state, header.config, kind)


def model_config_of_checkpoint(path: str) -> ModelConfig:
    """The ModelConfig a checkpoint was saved with, read without loading weights."""
    path = path.rstrip("/")
    kind = detect_kind(path)
    if kind == "hf":
        return read_hf_config(path)
    if kind == "olmo":
        return olmo_config(path)[1]
    config = read_config(path, read_manifest(path))
    if not config or not isinstance(config.get("model"), dict):
        raise CheckpointError(f"{path}/config.yaml: no `model:` section; cannot tell the model's shape")
    try:
        return ModelConfig(**config["model"])
    except (TypeError, ConfigError) as e:
        raise CheckpointError(f"{path}/config.yaml: `model:` section is not a valid ModelConfig: {e}") from e


def config_of_checkpoint(path: str) -> dict[str, Any] | None:
    """The full config stored with a checkpoint (config.yaml or config.json) as a dict."""
    kind = detect_kind(path.rstrip("/"))
    if kind == "hf":
        return hf_config_json(path)
    if kind == "olmo":
        return olmo_config(path)[0]
    return read_config(path, read_manifest(path))


def read_model_state(path: str) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    """Full olmo_fn model tensors and ModelConfig of any checkpoint, without building a model."""
    path = path.rstrip("/")
    cfg = model_config_of_checkpoint(path)
    if detect_kind(path) == "sharded":
        return read_sharded_full(path, with_optim=False)[0], cfg
    tensors = collect(open_source(path, with_optim=False))
    return {k[len("model.") :]: v for k, v in tensors.items()}, cfg


def unshard(input_path: str, output_path: str, overwrite: bool = False) -> None:
    """Turn a sharded olmo_fn checkpoint into a native unsharded one (model, optimizer, trainer state),
    published only when complete; an existing output is replaced only with `overwrite`."""
    input_path, output_path = input_path.rstrip("/"), output_path.rstrip("/")
    storage.check_output(output_path, overwrite, reads=[input_path])
    if detect_kind(input_path) != "sharded":
        raise CheckpointError(f"{input_path}: not a sharded olmo_fn checkpoint (it has no model_and_optim/)")
    model, optim = read_sharded_full(input_path)
    trainer_state, config = trainer_state_and_config(input_path)
    step = read_manifest(input_path)["step"]
    content = Content(model, optim, trainer_state, config)
    storage.write_then_publish(output_path, lambda folder: write_native_dir(folder, content, step))
