"""olmo_fn's unsharded checkpoint folder: safetensors + JSON + YAML, and a manifest written last.

config.yaml          the full training config (yaml.safe_dump of a plain dict)
model.safetensors    parameters by olmo_fn name (full, unsharded tensors)
optim.safetensors    optimizer tensors by flat name ("state.{param}.exp_avg"); the rest (param groups,
                     non-tensor state) as JSON in its metadata
train.json           trainer state without its tensors; train.safetensors: its tensors (RNG states)
manifest.json        kind, step, and size + checksum of every other file; its presence marks completeness
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch
import yaml
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from olmo_fn.checkpoint import storage
from olmo_fn.checkpoint.tensors import decode_state, encode_state, load_safetensors, write_safetensors
from olmo_fn.errors import CheckpointError

FORMAT = "olmo_fn"
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
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(model, options=options), None
    return get_state_dict(model, optimizer, options=options)


def apply_full_state(
    model: nn.Module, optimizer: torch.optim.Optimizer | None, msd: dict[str, Any], osd: dict[str, Any] | None
) -> None:
    """Load full model (and flat optimizer) state into a plain, FSDP2 or TP model of any world size."""
    options = StateDictOptions(full_state_dict=True)
    try:
        if optimizer is None or osd is None:
            from torch.distributed.checkpoint.state_dict import set_model_state_dict

            set_model_state_dict(model, msd, options=options)
            return
        tuples = [{k for k, v in g.items() if isinstance(v, tuple)} for g in optimizer.param_groups]
        nested = nest_optim_state(osd, model, optimizer)
        set_state_dict(model, optimizer, model_state_dict=msd, optim_state_dict=nested, options=options)
        for group, keys in zip(optimizer.param_groups, tuples):  # the full-state path turns tuples into lists
            group.update({k: tuple(group[k]) for k in keys if isinstance(group[k], list)})
    except (RuntimeError, KeyError, ValueError) as e:
        raise CheckpointError(f"checkpoint does not fit the model/optimizer: {e}") from e


def param_names(model: nn.Module) -> dict[int, str]:
    """id(parameter) -> its state-dict name (wrapper prefixes of compile and checkpointing removed)."""
    strip = ("_orig_mod.", "_checkpoint_wrapped_module.", "_fsdp_wrapped_module.")
    names = {}
    for name, p in model.named_parameters():
        for prefix in strip:
            name = name.replace(prefix, "")
        names[id(p)] = name
    return names


def nest_optim_state(
    flat: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Flat optimizer state ("state.{param}.{key}", "param_groups.{param}.{key}") -> torch's nested layout.

    Groups follow the optimizer's current grouping; saved hyperparameters override the current ones, and
    values JSON turned into lists (betas) get their tuple type back.
    """
    state: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        if key.startswith("state."):
            name, item = key[len("state.") :].rsplit(".", 1)
            state.setdefault(name, {})[item] = value
    names, groups = param_names(model), []
    for group in optimizer.param_groups:
        fqns = [names[id(p)] for p in group["params"]]
        hyper = {}
        for k, current in group.items():
            if k != "params":
                saved = flat.get(f"param_groups.{fqns[0]}.{k}", current) if fqns else current
                hyper[k] = tuple(saved) if isinstance(current, tuple) and isinstance(saved, list) else saved
        groups.append({**hyper, "params": fqns})
    return {"state": state, "param_groups": groups}


def split_optim(osd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Flat optimizer state -> (tensors, JSON-able rest)."""
    tensors = {k: v for k, v in osd.items() if isinstance(v, torch.Tensor)}
    rest = {k: encode_state(v) for k, v in osd.items() if not isinstance(v, torch.Tensor)}
    return tensors, rest


def write_native_dir(url: str, content: Content, step: int, kind: str = "unsharded") -> None:
    """Write every file of a native folder at url, the manifest last."""
    files: dict[str, dict[str, Any]] = {}
    if content.config is not None:
        files["config.yaml"] = _write(
            url, "config.yaml", yaml.safe_dump(content.config, sort_keys=False).encode()
        )
    files["model.safetensors"] = write_safetensors(storage.join(url, "model.safetensors"), content.model)
    if content.optim is not None:
        tensors, rest = split_optim(content.optim)
        meta = {_OPTIM_META: json.dumps(rest)}
        files["optim.safetensors"] = write_safetensors(storage.join(url, "optim.safetensors"), tensors, meta)
    if content.trainer_state is not None:
        files.update(write_trainer_state(url, "train", content.trainer_state))
    write_manifest(url, kind, step, files)


def _write(url: str, name: str, data: bytes) -> dict[str, Any]:
    storage.write_bytes(storage.join(url, name), data)
    return storage.entry(data)


def write_trainer_state(url: str, stem: str, state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{stem}.json + {stem}.safetensors holding a trainer state; returns their manifest entries."""
    tensors: dict[str, torch.Tensor] = {}
    tree = encode_state(state, tensors)
    return {
        f"{stem}.json": _write(url, f"{stem}.json", json.dumps(tree).encode()),
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


def read_native_dir(url: str, with_optim: bool = True) -> Content:
    """Every file of a native unsharded folder, verified against its manifest."""
    manifest = read_manifest(url)
    model, _ = load_safetensors(read_checked(url, "model.safetensors", manifest), url)
    optim = None
    if with_optim and "optim.safetensors" in manifest["files"]:
        tensors, meta = load_safetensors(read_checked(url, "optim.safetensors", manifest), url)
        rest = {k: decode_state(v, {}) for k, v in json.loads(meta.get(_OPTIM_META, "{}")).items()}
        optim = {**tensors, **rest}
    trainer = read_trainer_state(url, "train", manifest) if "train.json" in manifest["files"] else None
    return Content(model, optim, trainer, read_config(url, manifest))
