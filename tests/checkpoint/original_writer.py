"""Test helpers that write an olmo_fn checkpoint out again as an original OLMo folder (model.pt, optim.pt with
integer parameter ids in the original's registration order, train.pt) and as a Hugging Face folder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import yaml

from olmo_fn.checkpoint.hf_dir import write_hf_dir
from olmo_fn.checkpoint.load import model_config_of_checkpoint, open_source
from olmo_fn.checkpoint.olmo import to_olmo_state_dict
from olmo_fn.checkpoint.olmo_dir import olmo_param_order
from olmo_fn.checkpoint.source import collect


def _split(path: str):
    tensors = collect(open_source(path))
    model = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    optim = {k[len("optim.state.") :]: v for k, v in tensors.items() if k.startswith("optim.state.")}
    return model, optim


def write_original_dir(native: str, out: Path, trainer_state: dict) -> None:
    """An original OLMo unsharded folder holding what the native checkpoint holds."""
    cfg = model_config_of_checkpoint(native)
    model, optim = _split(native)
    out.mkdir(parents=True)
    model_section = dataclasses.asdict(cfg)
    (out / "config.yaml").write_text(yaml.safe_dump({"model": model_section, "optimizer": {"name": "adamw"}}))
    torch.save(to_olmo_state_dict(model, cfg), out / "model.pt")
    order = olmo_param_order(cfg)
    state = {}
    for key in ("exp_avg", "exp_avg_sq"):
        fused = to_olmo_state_dict({n: optim[f"{n}.{key}"] for n in model}, cfg)
        for i, name in enumerate(order):
            state.setdefault(i, {})[key] = fused[name]
    step = next(v for k, v in optim.items() if k.endswith(".step"))
    for entry in state.values():
        entry["step"] = step.clone()
    groups = [{"lr": 1e-3, "params": list(range(len(order)))}]
    torch.save({"state": state, "param_groups": groups}, out / "optim.pt")
    torch.save(trainer_state, out / "train.pt")


def write_hf(native: str, out: Path) -> None:
    """A Hugging Face folder of the native checkpoint's weights (no optimizer, no trainer state)."""
    model, _ = _split(native)
    write_hf_dir(str(out), model, model_config_of_checkpoint(native))
