"""Reading original OLMo checkpoint folders (config.yaml, model/optim as .pt or .safetensors, train.pt).

Nothing is unpickled freely: `.pt` files go through `torch.load(weights_only=True)` with an allow-list of
the few types train.pt needs (Path in its checkpoint lists, numpy arrays in its RNG state), and the keys of
the original's custom `.safetensors` (URL-safe base64 of a pickled `(key_path, value_is_pickled)` tuple)
go through an unpickler that refuses every global, so only plain tuples, strings, numbers and bools pass.
"""

from __future__ import annotations

import base64
import functools
import io
import pathlib
import pickle
from contextlib import ExitStack
from typing import Any

import numpy as np
import torch

from olmo_fn.checkpoint import storage
from olmo_fn.checkpoint.olmo import from_olmo_state_dict, model_config_from_olmo
from olmo_fn.checkpoint.source import Convert, Lazy, Source, converted_source
from olmo_fn.checkpoint.tensors import SafetensorsReader
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


def plain_unpickle(data: bytes, where: str = "pickled value") -> Any:
    """Unpickle data that may only hold builtin values; CheckpointError naming `where` for anything else."""
    try:
        return _PlainUnpickler(io.BytesIO(data)).load()
    except Exception as e:  # noqa: BLE001 - hostile bytes raise anything from pickle's machinery
        why = (str(e).splitlines() or [""])[0][:200] or type(e).__name__
        raise CheckpointError(f"{where}: not a plain pickled value ({why})") from None


def decode_key(key: str, url: str = "") -> tuple[tuple[str | int, ...], bool]:
    """An original OLMo safetensors key -> (key path, value_is_pickled); CheckpointError naming the file
    (`url`) when the key is not the URL-safe base64 of a pickled `(non-empty tuple of str/int, bool)`."""
    where = f"{url + ': ' if url else ''}safetensors key {key[:40]!r}"
    try:
        raw = base64.urlsafe_b64decode(key)
    except ValueError as e:  # binascii.Error, or a character outside ASCII
        raise CheckpointError(f"{where} is not an original OLMo key (not base64: {e})") from None
    value = plain_unpickle(raw, f"{where} is not an original OLMo key")
    ok = (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], tuple)
        and len(value[0]) > 0
        and type(value[1]) is bool
    )
    if not ok or not all(type(k) in (str, int) for k in value[0]):
        raise CheckpointError(f"{where} is not an original OLMo key: it decodes to no (key path, bool) tuple")
    return value


def load_pt(url: str) -> Any:
    """torch.load with weights_only=True and the allow-list above; a local file is memory-mapped (tensors
    are read when used), a remote one read whole."""
    try:
        with torch.serialization.safe_globals(_ALLOWED):
            if storage.is_local(url):
                return torch.load(storage.local_path(url), map_location="cpu", weights_only=True, mmap=True)
            return torch.load(io.BytesIO(storage.read_bytes(url)), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        why = next(
            (line for line in lines if "GLOBAL" in line or "global" in line), lines[0] if lines else ""
        )
        raise CheckpointError(
            f"{url}: refused to load (only tensors and allow-listed types are read): {why}"
        ) from None
    except FileNotFoundError as e:
        raise CheckpointError(f"{url}: no such file") from e
    except Exception as e:  # noqa: BLE001 - corrupt bytes raise anything from torch's zip and pickle readers
        why = (str(e).splitlines() or [""])[0][:200] or type(e).__name__
        raise CheckpointError(f"{url}: not a readable PyTorch file ({why})") from None


def _insert(tree: dict[Any, Any], path: tuple[Any, ...], value: Any, url: str) -> None:
    """Put value at path; a path that another key's path already holds, or runs through, is refused."""
    node = tree
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if part in node and (last or not isinstance(node[part], dict)):
            raise CheckpointError(
                f"{url}: two keys decode to {'.'.join(map(str, path[: i + 1]))} (a value and another value or "
                "section there); the file is corrupt"
            )
        if last:
            node[part] = value
        else:
            node = node.setdefault(part, {})


def _lazy_leaves(tree: Any, mapped: bool) -> Any:
    """A loaded .pt object with its tensors as Lazy (their pages dropped after use when torch mapped the file)."""
    if isinstance(tree, dict):
        return {k: _lazy_leaves(v, mapped) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_lazy_leaves(v, mapped) for v in tree]
    if not isinstance(tree, torch.Tensor):
        return tree
    return Lazy.mapped(tree) if mapped else Lazy.of(tree)


def materialize(tree: Any) -> Any:
    """The same nested object with every Lazy read."""
    if isinstance(tree, dict):
        return {k: materialize(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [materialize(v) for v in tree]
    return tree.load() if isinstance(tree, Lazy) else tree


def olmo_file_tree(url: str, stem: str, stack: ExitStack, streamed: bool = False) -> Any | None:
    """{stem}.safetensors (preferred, as the original does) or {stem}.pt of a folder as the nested object
    the original saved, with tensors left unread (Lazy); None if neither file exists. `streamed`: the
    tensors are used one at a time, so a safetensors reader may reuse one buffer for all of them."""
    st, pt = storage.join(url, f"{stem}.safetensors"), storage.join(url, f"{stem}.pt")
    if storage.exists(st):
        reader = SafetensorsReader(st, stack.enter_context(storage.open_read(st)), reuse_buffer=streamed)
        tree: dict[Any, Any] = {}
        for key in reader.infos:
            path, pickled = decode_key(key, st)
            if pickled:
                raw = reader.read(key).reshape(-1).view(torch.uint8).numpy().tobytes()
                value: Any = plain_unpickle(raw, f"{st}: the value of {'.'.join(map(str, path))}")
            else:
                value = Lazy(*reader.shape_and_dtype(key), functools.partial(reader.read, key))
            _insert(tree, path, value, st)
        return tree
    if storage.exists(pt):
        return _lazy_leaves(load_pt(pt), mapped=storage.is_local(pt))  # load_pt maps local files
    return None


def olmo_config(url: str) -> tuple[dict[str, Any], ModelConfig]:
    """(full config dict, ModelConfig) of an original folder's config.yaml."""
    from olmo_fn.original import load_yaml  # the original's scalar rules: `1e-6` is a float

    config = load_yaml(storage.read_bytes(storage.join(url, "config.yaml")), f"{url}/config.yaml")
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


def _trainer_state(train: dict[str, Any], url: str) -> dict[str, Any]:
    try:
        return train_state_from_olmo(train)
    except (TypeError, ValueError, OverflowError) as e:  # counts that are no numbers
        raise CheckpointError(
            f"{url}: the train file holds no trainer state the original writes ({e})"
        ) from None


def _unprefixed(name: str) -> str:
    """A parameter name without the wrappers of the original's FSDP or DDP."""
    name = name.replace("_fsdp_wrapped_module.", "")
    return name[len("module.") :] if name.startswith("module.") else name


def _model_items(tree: dict[str, Any], cfg: ModelConfig, url: str) -> list[tuple[Lazy, Convert]]:
    def convert(name: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        try:
            return {
                f"model.{k}": v for k, v in from_olmo_state_dict({_unprefixed(name): tensor}, cfg).items()
            }
        except ConfigError as e:
            raise CheckpointError(f"{url}: model file does not match config.yaml: {e}") from e

    if not isinstance(tree, dict):
        raise CheckpointError(f"{url}: the model file holds a {type(tree).__name__}, not a state dict")
    for name, lazy in tree.items():
        if not isinstance(name, str) or not isinstance(lazy, Lazy):
            raise CheckpointError(
                f"{url}: the model file's {str(name)[:80]!r} is not a tensor named by a string"
            )
    return [(lazy, functools.partial(convert, name)) for name, lazy in tree.items()]


def _optim_items(tree: dict[str, Any], cfg: ModelConfig, url: str) -> list[tuple[Lazy, Convert]]:
    """Original optimizer state -> items yielding "optim.state.{olmo_fn param}.{key}" (q/k/v split too)."""
    state = tree.get("state", {}) if isinstance(tree, dict) else None
    groups = tree.get("param_groups", []) if isinstance(tree, dict) else None
    if not isinstance(state, dict) or not all(isinstance(s, dict) for s in state.values()):
        raise CheckpointError(f"{url}: the optimizer file holds no `state` of one dict per parameter")
    if not isinstance(groups, list) or not all(isinstance(g, dict) and "params" in g for g in groups):
        raise CheckpointError(f"{url}: the optimizer file's param_groups are not a list of groups")
    names = _param_names(tree, cfg, url)

    def split(name: str, key: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        try:
            pieces = from_olmo_state_dict({name: tensor}, cfg)
        except ConfigError as e:
            raise CheckpointError(f"{url}: optimizer file does not match config.yaml: {e}") from e
        return {f"optim.state.{k}.{key}": v for k, v in pieces.items()}

    def same(ours: list[str], key: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        return {f"optim.state.{o}.{key}": tensor for o in ours}

    items = []
    for param, state in tree.get("state", {}).items():
        if not isinstance(names.get(param), str):
            raise CheckpointError(
                f"{url}: optimizer state of parameter {param!r}, which its param_groups lack"
            )
        name = _unprefixed(names[param])
        for key, value in state.items():
            if isinstance(value, Lazy) and value.shape:
                items.append((value, functools.partial(split, name, key)))
                continue
            scalar = value.load().clone() if isinstance(value, Lazy) else torch.tensor(float(value))
            items.append((Lazy.of(scalar), functools.partial(same, _split_names(name, cfg), key)))
    return items


def olmo_source(url: str, with_optim: bool = True) -> Source:
    """An original OLMo unsharded folder as a Source (olmo_fn names; fused projections split as read).

    Optimizer hyperparameters are not taken from the file: the original re-sets learning rate and weight
    decay from its config on load, and so does olmo_fn (the optimizer's current groups are kept).
    """
    config, cfg = olmo_config(url)
    stack = ExitStack()
    try:
        model = olmo_file_tree(url, "model", stack, streamed=True)
        if model is None:
            raise CheckpointError(
                f"{url}: neither model.safetensors nor model.pt; download the model file too"
            )
        items = _model_items(model, cfg, url)
        optim = olmo_file_tree(url, "optim", stack, streamed=True) if with_optim else None
        if optim is not None:
            items += _optim_items(optim, cfg, url)
        with ExitStack() as small:
            train = olmo_file_tree(url, "train", small)
            trainer_state = _trainer_state(materialize(train), url) if isinstance(train, dict) else None
        return converted_source(items, stack, trainer_state=trainer_state, config=config, kind="olmo")
    except BaseException:
        stack.close()  # the files opened so far
        raise
