"""Hugging Face model folders: config.json, generation_config.json, model.safetensors, optional tokenizer.

Written so that `AutoModelForCausalLM.from_pretrained` (OlmoForCausalLM / Olmo2ForCausalLM /
Olmo3ForCausalLM) and `AutoTokenizer.from_pretrained` load them offline; read back (single or index-sharded safetensors, or a
`pytorch_model.bin` through `torch.load(weights_only=True)`) into olmo_fn names and a ModelConfig.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from contextlib import ExitStack
from typing import Any

import torch

from olmo_fn.checkpoint import storage
from olmo_fn.checkpoint.hf import from_hf_state_dict, hf_config, model_config_from_hf, to_hf_state_dict
from olmo_fn.checkpoint.source import Lazy, Source, collect, converted_source
from olmo_fn.checkpoint.tensors import SafetensorsReader, write_safetensors
from olmo_fn.config import ModelConfig
from olmo_fn.errors import CheckpointError, ConfigError


def write_hf_dir(
    url: str, model_sd: dict[str, torch.Tensor], cfg: ModelConfig, tokenizer_json: str | None = None
) -> None:
    """Write a transformers model folder (and tokenizer, with eos/pad from cfg) at a path or URL."""
    if not storage.is_local(url):
        with tempfile.TemporaryDirectory() as tmp:
            write_hf_dir(tmp, model_sd, cfg, tokenizer_json)
            fs, path = storage.url_to_fs(url)
            fs.put(tmp.rstrip("/") + "/", path.rstrip("/") + "/", recursive=True)
        return
    from transformers import GenerationConfig

    os.makedirs(url, exist_ok=True)
    config = hf_config(cfg)
    config.save_pretrained(url)
    GenerationConfig(eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id).save_pretrained(url)
    hf_sd = to_hf_state_dict(model_sd, cfg)
    if cfg.weight_tying:  # transformers re-ties lm_head to the embedding on load
        hf_sd.pop("lm_head.weight", None)
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in hf_sd.items()}
    write_safetensors(os.path.join(url, "model.safetensors"), tensors, {"format": "pt"})
    if tokenizer_json is not None:
        write_tokenizer(url, tokenizer_json, cfg)


def write_tokenizer(out: str, tokenizer_json: str, cfg: ModelConfig) -> None:
    """Save a tokenizers JSON as a transformers fast tokenizer whose eos/pad are the model's ids."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    try:
        tok = Tokenizer.from_str(storage.read_bytes(tokenizer_json).decode())
    except Exception as e:  # noqa: BLE001 - tokenizers raises plain Exception subclasses
        raise ConfigError(f"{tokenizer_json}: not a tokenizers JSON file ({e})") from e
    eos, pad = tok.id_to_token(cfg.eos_token_id), tok.id_to_token(cfg.pad_token_id)
    if eos is None or pad is None:
        raise ConfigError(
            f"{tokenizer_json}: has no token for eos_token_id={cfg.eos_token_id} or pad_token_id="
            f"{cfg.pad_token_id}; pass the tokenizer the model was trained with"
        )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=pad)
    fast.model_max_length = cfg.max_sequence_length
    fast.save_pretrained(out)


def _hf_config_class(model_type: str) -> Any:
    from transformers import Olmo2Config, Olmo3Config, OlmoConfig

    classes = {"olmo": OlmoConfig, "olmo2": Olmo2Config, "olmo3": Olmo3Config}
    if model_type not in classes:
        raise CheckpointError(
            f"config.json: model_type {model_type!r} is not supported (olmo, olmo2 or olmo3)"
        )
    return classes[model_type]


def _json_object(url: str) -> dict[str, Any]:
    """A JSON file holding an object; CheckpointError naming it otherwise."""
    try:
        value = json.loads(storage.read_bytes(url))
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError
        raise CheckpointError(f"{url}: not JSON ({(str(e).splitlines() or [''])[0]})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{url}: holds a JSON {type(value).__name__}, not an object")
    return value


def read_hf_config(url: str) -> ModelConfig:
    """ModelConfig of a transformers folder's config.json."""
    raw = _json_object(storage.join(url, "config.json"))
    hf_cfg = _hf_config_class(raw.get("model_type")).from_dict(raw)
    try:
        return model_config_from_hf(hf_cfg)
    except ConfigError as e:
        raise CheckpointError(f"{url}/config.json: {e}") from e


def _hf_weight_files(url: str) -> list[str]:
    """The weight files of a folder: model.safetensors, its index's shards, or pytorch_model.bin."""
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if storage.exists(storage.join(url, index)):
            weight_map = _json_object(storage.join(url, index)).get("weight_map")
            files = list(weight_map.values()) if isinstance(weight_map, dict) else [None]
            for name in files:
                if not isinstance(name, str) or not name or name.startswith("/") or ".." in name.split("/"):
                    raise CheckpointError(
                        f"{url}/{index}: weight_map names {str(name)[:80]!r}, not a file of the folder"
                    )
            return sorted(set(files))
    for name in ("model.safetensors", "pytorch_model.bin"):
        if storage.exists(storage.join(url, name)):
            return [name]
    raise CheckpointError(f"{url}: no model.safetensors or pytorch_model.bin next to config.json")


def hf_source(url: str, with_optim: bool = False) -> Source:
    """A transformers folder as a Source of olmo_fn-named weights, file by file and tensor by tensor
    (safetensors by byte range; a local pytorch_model.bin memory-mapped). It has no optimizer state."""
    cfg = read_hf_config(url)

    def convert(name: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        try:
            return {f"model.{k}": v for k, v in from_hf_state_dict({name: tensor}, cfg).items()}
        except ConfigError as e:
            raise CheckpointError(f"{url}: {e}") from e

    stack, items, seen = ExitStack(), [], {}  # seen: tensor name -> the file holding it
    try:
        for name in _hf_weight_files(url):
            lazies = _file_lazies(storage.join(url, name), stack)
            for k in lazies:
                if k in seen:
                    raise CheckpointError(
                        f"{url}: tensor {k!r} is in both {seen[k]} and {name}; which is meant?"
                    )
                seen[k] = name
            items += [(lazy, functools.partial(convert, k)) for k, lazy in lazies.items()]
        return converted_source(items, stack, config=hf_config_json(url), kind="hf")
    except BaseException:
        stack.close()  # the files opened so far
        raise


def _file_lazies(file_url: str, stack: ExitStack) -> dict[str, Lazy]:
    """The tensors of one weight file, unread (a safetensors file is kept open on `stack`)."""
    if file_url.endswith(".safetensors"):
        reader = SafetensorsReader(
            file_url, stack.enter_context(storage.open_read(file_url)), reuse_buffer=True
        )
        return {k: Lazy(*reader.shape_and_dtype(k), functools.partial(reader.read, k)) for k in reader.infos}
    loaded = _load_bin(file_url)
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in loaded.items()
    ):
        raise CheckpointError(f"{file_url}: not a state dict of named tensors")
    wrap = Lazy.mapped if storage.is_local(file_url) else Lazy.of  # _load_bin maps local files
    return {k: wrap(t) for k, t in loaded.items()}


def _load_bin(url: str) -> dict[str, torch.Tensor]:
    from olmo_fn.checkpoint.olmo_dir import load_pt  # the one restricted torch.load

    return load_pt(url)


def read_hf_dir(url: str) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    """(olmo_fn state dict, ModelConfig) of a transformers OLMo / OLMo 2 folder, in memory."""
    tensors = collect(hf_source(url))
    return {k[len("model.") :]: v for k, v in tensors.items()}, read_hf_config(url)


def hf_config_json(url: str) -> dict[str, Any]:
    """config.json as a dict (the `config` of a loaded HF checkpoint)."""
    return _json_object(storage.join(url, "config.json"))
