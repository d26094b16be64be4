"""Reading original OLMo checkpoint folders (config.yaml, model/optim as .pt or .safetensors, train.pt).

Nothing is unpickled freely: `.pt` files go through `torch.load(weights_only=True)` with an allow-list of
the few types train.pt needs (Path in its checkpoint lists, numpy arrays in its RNG state), and the keys of
the original's custom `.safetensors` (URL-safe base64 of a pickled `(key_path, value_is_pickled)` tuple)
go through an unpickler that refuses every global, so only plain tuples, strings, numbers and bools pass.
"""

from __future__ import annotations

import base64
import io
import pathlib
import pickle
from typing import Any

import numpy as np
import torch
import yaml

from olmo_fn.checkpoint import storage
from olmo_fn.checkpoint.olmo import from_olmo_state_dict, model_config_from_olmo
from olmo_fn.checkpoint.tensors import load_safetensors
from olmo_fn.config import ModelConfig
from olmo_fn.errors import CheckpointError, ConfigError

_reconstruct = np._core.multiarray._reconstruct
_ALLOWED = [
    pathlib.PosixPath,
    pathlib.PurePosixPath,
    np.ndarray,
    np.dtype,
    type(np.dtype("uint32")),
    _reconstruct,
    (_reconstruct, "numpy.core.multiarray._reconstruct"),
]


class _PlainUnpickler(pickle.Unpickler):
    """Admits builtin values only (tuples, lists, dicts, str, int, float, bool, None): no globals at all."""

    def find_class(self, module: str, name: str) -> Any:
        raise CheckpointError(f"refusing to unpickle {module}.{name}: only plain values are allowed here")


def plain_unpickle(data: bytes) -> Any:
    """Unpickle data that may only hold builtin values."""
    return _PlainUnpickler(io.BytesIO(data)).load()


def decode_key(key: str) -> tuple[tuple[str | int, ...], bool]:
    """An original OLMo safetensors key -> (key path, value_is_pickled)."""
    try:
        value = plain_unpickle(base64.urlsafe_b64decode(key))
    except (pickle.UnpicklingError, ValueError, EOFError) as e:
        raise CheckpointError(f"safetensors key {key[:40]!r} is not an original OLMo key ({e})") from e
    ok = (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], tuple)
        and isinstance(value[1], bool)
    )
    if not ok or not all(isinstance(k, (str, int)) for k in value[0]):
        raise CheckpointError(f"safetensors key {key[:40]!r} is not an original OLMo key tuple")
    return value


def unflatten_olmo_safetensors(tensors: dict[str, torch.Tensor]) -> dict[Any, Any]:
    """The nested dict that the original flattened into its safetensors file."""
    out: dict[Any, Any] = {}
    for key, tensor in tensors.items():
        path, pickled = decode_key(key)
        value: Any = plain_unpickle(tensor.numpy().tobytes()) if pickled else tensor
        target = out
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    return out


def load_pt(data: bytes, url: str) -> Any:
    """torch.load with weights_only=True and the allow-list above."""
    try:
        with torch.serialization.safe_globals(_ALLOWED):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{url}: refused to load (only tensors and allow-listed types are read): {e}"
        ) from e


def read_olmo_file(url: str, stem: str) -> Any | None:
    """{stem}.safetensors (preferred, as the original does) or {stem}.pt of a folder, or None if neither."""
    st, pt = storage.join(url, f"{stem}.safetensors"), storage.join(url, f"{stem}.pt")
    if storage.exists(st):
        tensors, _ = load_safetensors(storage.read_bytes(st), st)
        return unflatten_olmo_safetensors(tensors)
    if storage.exists(pt):
        return load_pt(storage.read_bytes(pt), pt)
    return None


def olmo_config(url: str) -> tuple[dict[str, Any], ModelConfig]:
    """(full config dict, ModelConfig) of an original folder's config.yaml."""
    config = yaml.safe_load(storage.read_bytes(storage.join(url, "config.yaml")))
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise CheckpointError(f"{url}/config.yaml: no `model:` section; is this an OLMo checkpoint folder?")
    try:
        return config, model_config_from_olmo(config["model"])
    except ConfigError as e:
        raise CheckpointError(f"{url}/config.yaml: {e}") from e


def olmo_param_order(cfg: ModelConfig) -> list[str]:
    """The original model's parameter names in registration order (how int optimizer ids count them)."""
    names = ["transformer.wte.weight"] + (["transformer.ln_f.weight"] if cfg.layer_norm_with_affine else [])
    for i in range(cfg.n_layers):
        p = f"transformer.blocks.{i}."
        if cfg.attention_layer_norm and cfg.attention_layer_norm_with_affine:
            names += [p + "k_norm.weight", p + "q_norm.weight"]
        names += [p + n + ".weight" for n in ("attn_out", "ff_out", "att_proj", "ff_proj")]
        if cfg.layer_norm_with_affine:
            names += [p + "attn_norm.weight", p + "ff_norm.weight"]
    return names + ([] if cfg.weight_tying else ["transformer.ff_out.weight"])


def _param_names(optim: dict[str, Any], cfg: ModelConfig, url: str) -> dict[Any, str]:
    """Optimizer state key -> original parameter name (keys are names already, or int ids)."""
    state, groups = optim.get("state", {}), optim.get("param_groups", [])
    if all(isinstance(k, str) for k in state):
        return {k: k for k in state}
    if groups and all("param_names" in g for g in groups):
        return {i: n for g in groups for i, n in zip(g["params"], g["param_names"])}
    ids = [i for g in groups for i in g["params"]]
    order = olmo_param_order(cfg)
    if len(ids) != len(order):
        raise CheckpointError(f"{url}: optimizer has {len(ids)} parameters, the model {len(order)}")
    return dict(zip(ids, order))


def olmo_optim_state(optim: dict[str, Any], cfg: ModelConfig, url: str) -> dict[str, dict[str, Any]]:
    """Original optimizer state -> {olmo_fn param name: {exp_avg, exp_avg_sq, step, ...}}."""
    names = _param_names(optim, cfg, url)
    per_name = {names[k].replace("_fsdp_wrapped_module.", ""): v for k, v in optim["state"].items()}
    tensor_keys = {
        k for v in per_name.values() for k, t in v.items() if isinstance(t, torch.Tensor) and t.dim()
    }
    out: dict[str, dict[str, Any]] = {}
    for key in tensor_keys:
        for ours, t in from_olmo_state_dict({n: v[key] for n, v in per_name.items()}, cfg).items():
            out.setdefault(ours, {})[key] = t
    origin = olmo_origin(cfg)
    for ours, entry in out.items():
        scalars = per_name[origin[ours]]
        entry.update({k: v for k, v in scalars.items() if k not in tensor_keys})
    return out


def olmo_origin(cfg: ModelConfig) -> dict[str, str]:
    """olmo_fn parameter name -> the original parameter it comes from (q/k/v <- att_proj, ...)."""
    return {ours: name for name in olmo_param_order(cfg) for ours in _split_names(name, cfg)}


def _split_names(name: str, cfg: ModelConfig) -> list[str]:
    """The olmo_fn names one original parameter becomes."""
    d, kv = cfg.d_model, cfg.effective_n_kv_heads * cfg.head_dim
    rows = {"att_proj": d + 2 * kv, "ff_proj": cfg.ff_proj_size}
    kind = name.split(".")[-2]
    fake = torch.empty((rows.get(kind, 2), 1), device="meta")
    return list(from_olmo_state_dict({name: fake}, cfg))


def train_state_from_olmo(train: dict[str, Any]) -> dict[str, Any]:
    """The original train.pt as olmo_fn's trainer state dict (no data loader state: it resumes by count)."""
    examples = train.get("global_train_examples_seen_this_epoch", train.get("global_train_examples_seen", 0))
    return {
        "step": int(train.get("global_step", train.get("global_data_step", 0))),
        "tokens_seen": int(train.get("global_train_tokens_seen", 0)),
        "examples_seen_this_epoch": int(examples),
        "epoch": int(train.get("epoch") or 0),
        "world_size": int(train.get("world_size", 1)),
        "data_loader": None,
        "rng": train.get("rng"),
    }


def read_olmo_dir(
    url: str, with_optim: bool
) -> tuple[dict, dict | None, dict | None, dict[str, Any], ModelConfig]:
    """(model state, per-parameter optimizer state, trainer state, config, ModelConfig), olmo_fn names."""
    config, cfg = olmo_config(url)
    model = read_olmo_file(url, "model")
    if model is None:
        raise CheckpointError(f"{url}: neither model.safetensors nor model.pt; download the model file too")
    try:
        model_sd = from_olmo_state_dict(model, cfg)
    except ConfigError as e:
        raise CheckpointError(f"{url}: model file does not match config.yaml: {e}") from e
    optim = read_olmo_file(url, "optim") if with_optim else None
    optim_state = olmo_optim_state(optim, cfg, url) if optim is not None else None
    train = read_olmo_file(url, "train")
    trainer_state = train_state_from_olmo(train) if isinstance(train, dict) else None
    return model_sd, optim_state, trainer_state, config, cfg


def flat_optim_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, per_param: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Per-parameter state + the optimizer's current param groups, in torch's flat state-dict layout.

    The original re-sets learning rate and weight decay from the config on load; so do we (groups kept).
    """
    names = {id(p): n for n, p in model.named_parameters()}
    flat: dict[str, Any] = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            name = names[id(p)]
            if name not in per_param:
                raise CheckpointError(
                    f"optimizer state of the checkpoint has no entry for parameter {name!r}"
                )
            flat.update({f"param_groups.{name}.{k}": v for k, v in group.items() if k != "params"})
            flat.update({f"state.{name}.{k}": v for k, v in per_param[name].items()})
    return flat
