"""Print the exact instances (token ids and text) of one training batch of a run.

Examples:
    python tools/inspect_data.py --save-folder runs/tiny --batch 10
    python tools/inspect_data.py --config OLMo-7B.yaml --order https://.../global_indices.npy --batch 0 --json
    python tools/inspect_data.py --experiment experiments/olmo_tiny.py --batch 3
    python tools/inspect_data.py --experiment olmo2_13b --paths part-0.npy part-1.npy --batch 0 --json
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
    save_folder_order,
)
from olmo_fn.data.prepare import load_tokenizer
from olmo_fn.errors import ConfigError, OlmoFnError
from olmo_fn.launch import run_tool
from olmo_fn.recipes import load_recipe


def inspect_data(
    batch: int,
    save_folder: str | None = None,
    config: str | None = None,
    experiment: str | None = None,
    order: str | None = None,
    epoch: int = 0,
    world_size: int = 1,
    paths: list[str] | None = None,
    tokenizer: str | None = None,
    as_json: Annotated[bool, tyro.conf.arg(name="json")] = False,
    max_chars: int | None = 2000,
) -> list[dict]:
    """Show global batch BATCH: each instance's index, source, token ids and decoded text.

    Args:
        batch: Global batch number (0-based): instances global_indices[batch*G:(batch+1)*G].
        save_folder: A run's save folder: its config.yaml and train_data/global_indices.npy are used.
        config: A config.yaml (olmo_fn's or the original OLMo's) instead of a save folder's.
        experiment: An experiment file whose config() gives the run's config, or a recipe's name (olmo_7b is
            experiments/olmo_7b.py of this repository, from any working directory).
        order: A global order file or URL (raw uint32); default: the save folder's, else seed + epoch.
        epoch: Epoch whose order is computed when there is no order file.
        world_size: World size of the run (only matters with drop_last when the order is computed).
        paths: Token files to read instead of the config's data.paths (e.g. local copies).
        tokenizer: Tokenizer JSON to decode with; default: the config's tokenizer.identifier if it is a file.
        as_json: Print JSON (a list of instances) for programs instead of text.
        max_chars: Cut each decoded text to this many characters in the text output (None = all).
    """
    sources = [s for s in (save_folder, config, experiment) if s]
    if len(sources) != 1:
        raise ConfigError("give exactly one of --save-folder, --config and --experiment")
    if experiment:
        recipe = load_recipe(experiment).config()
        cfg = dataclasses.asdict(recipe) if dataclasses.is_dataclass(recipe) else dict(recipe)
    else:
        cfg = load_config_dict(config or f"{save_folder.rstrip('/')}/config.yaml")
    run = run_data_from_dict(cfg, sources[0])
    if paths:
        run = replace(run, data=replace(run.data, paths=paths, datasets=None))
    order = order or (save_folder_order(save_folder) if save_folder else None)
    instances = inspect_batch(run, batch, order_path=order, epoch=epoch, world_size=world_size)
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
            print(f"=== batch {batch}, instance {k}: index {inst['index']} {json.dumps(inst['metadata'])}")
            print("input_ids:", " ".join(map(str, inst["input_ids"])))
            if "text" in inst:
                text = inst["text"] if max_chars is None else inst["text"][:max_chars]
                print("text:", text)
    return instances


if __name__ == "__main__":
    run_tool(inspect_data)
