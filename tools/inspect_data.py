"""Print the exact instances (token ids, text, label mask) that one training step of a run trained on.

Examples (the first two after the tiny run, `python experiments/olmo_tiny.py`, from the repository root):
    python tools/inspect_data.py --save-folder runs/olmo-tiny --step 200
    python tools/inspect_data.py --save-folder runs/olmo-tiny --epoch 1 --batch 0 --json
    python tools/inspect_data.py --experiment olmo_tiny --step 3
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from typing import Annotated

import tyro

from olmo_fn.data.inspect import (
    inspect_batch,
    load_config_dict,
    run_data_from_dict,
)
from olmo_fn.data.prepare import load_tokenizer
from olmo_fn.errors import ConfigError, OlmoFnError
from olmo_fn.launch import run_tool
from olmo_fn.recipes import load_recipe


def inspect_data(
    step: int | None = None,
    batch: int | None = None,
    epoch: int = 0,
    save_folder: str | None = None,
    config: str | None = None,
    experiment: str | None = None,
    order: str | None = None,
    world_size: int = 1,
    paths: list[str] | None = None,
    tokenizer: str | None = None,
    as_json: Annotated[bool, tyro.conf.arg(name="json")] = False,
    max_chars: int | None = 2000,
) -> list[dict]:
    """Show the global batch a run trained at a step: each instance's index, source, token ids, text and
    label mask.

    Args:
        step: Global step of the run (1-based, as its log counts): the batch trained at that step, whichever
            epoch it fell in.
        batch: Instead of --step: batch number (0-based) within the epoch given by --epoch.
        epoch: The epoch of --batch (0-based).
        save_folder: A run's save folder: its config.yaml and the order of each epoch in train_data/.
        config: A config.yaml (olmo_fn's or the original OLMo's) instead of a save folder's.
        experiment: An experiment file whose config() gives the run's config, or a recipe's name (olmo_7b is
            experiments/olmo_7b.py of this repository, from any working directory).
        order: A global order file or URL (raw uint32) of the epoch; by default the save folder's, else it is
            computed from the seed and the epoch.
        world_size: World size of the run; it only matters when the order is computed.
        paths: Token files to read instead of the config's data.paths (for example local copies).
        tokenizer: Tokenizer JSON file to decode with; by default the config's tokenizer.identifier if it is
            a file.
        as_json: Print JSON (a list of instances, each with its step, epoch and batch) for programs.
        max_chars: Cut each decoded text to this many characters in the text output (None shows all).
    """
    sources = [s for s in (save_folder, config, experiment) if s]
    if len(sources) != 1:
        raise ConfigError("give exactly one of --save-folder, --config and --experiment")
    if experiment:
        cfg = _recipe_config(experiment, paths)
    else:
        cfg = load_config_dict(config or f"{save_folder.rstrip('/')}/config.yaml")
    run = run_data_from_dict(cfg, sources[0])
    if paths:
        run = replace(run, data=replace(run.data, paths=paths, datasets=None))
    instances = inspect_batch(
        run,
        step=step,
        epoch=epoch,
        batch=batch,
        save_folder=save_folder,
        order_path=order,
        world_size=world_size,
    )
    tok_path = tokenizer or run.tokenizer
    if tok_path:
        try:
            tok = load_tokenizer(tok_path)
        except OlmoFnError:
            if tokenizer:
                raise
            tok = None  # the config names a hub id or a missing file: show ids only
        if tok is not None:
            for inst in instances:
                inst["text"] = tok.decode(inst["input_ids"], skip_special_tokens=False)
    if as_json:
        print(json.dumps(instances))
    else:
        for k, inst in enumerate(instances):
            step = f"step {inst['step']}" if inst["step"] else "never trained (drop_last)"
            where = f"{step} (epoch {inst['epoch']}, batch {inst['batch']})"
            print(f"=== {where}, instance {k}: index {inst['index']} {json.dumps(inst['metadata'])}")
            print("input_ids:", " ".join(map(str, inst["input_ids"])))
            if "label_mask" in inst:
                print("label_mask:", "".join("1" if m else "0" for m in inst["label_mask"]))
            if "text" in inst:
                text = inst["text"] if max_chars is None else inst["text"][:max_chars]
                print("text:", text)
    return instances


def _recipe_config(experiment: str, paths: list[str] | None) -> dict:
    """A recipe's config as a dict; a recipe with a default corpus (with_default_corpus, as olmo_tiny) gets
    it filled in as its run does, unless --paths replaces the data."""
    module = load_recipe(experiment)
    recipe = module.config()
    if not paths and callable(getattr(module, "with_default_corpus", None)):
        recipe = module.with_default_corpus(recipe)
    return dataclasses.asdict(recipe) if dataclasses.is_dataclass(recipe) else dict(recipe)


if __name__ == "__main__":
    run_tool(inspect_data)
