"""Convert a training config between the original OLMo's YAML and olmo_fn's.

Examples:
    python tools/convert_config.py OLMo-1B.yaml olmo-1b.yaml              # original -> olmo_fn's config.yaml
    python tools/convert_config.py experiments/olmo_1b.py OLMo-1B-original.yaml  # recipe -> original-style

The direction follows INPUT: an original YAML (an official config, or the config.yaml of an original checkpoint)
becomes olmo_fn's config YAML (the same YAML an olmo_fn checkpoint holds; run it with
experiments/original_config.py); an experiment file or an olmo_fn config.yaml becomes an original-style
TrainConfig YAML. What does not carry over is printed, one line each.
"""

from __future__ import annotations

from typing import Annotated

import tyro

from olmo_fn.checkpoint import storage
from olmo_fn.config import TrainConfig
from olmo_fn.config_io import config_from_dict, dump_yaml
from olmo_fn.errors import ConfigError
from olmo_fn.launch import run_tool
from olmo_fn.original import (
    load_yaml,
    original_from_train_config,
    read_original_config,
    train_config_from_original,
)
from olmo_fn.original.run import is_olmo_fn_config


def convert_config(
    input: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="INPUT")],
    output: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="OUTPUT")],
    overwrite: bool = False,
) -> None:
    """Write OUTPUT, the config of INPUT in the other format.

    Args:
        input: An original TrainConfig YAML, an olmo_fn config.yaml, or an experiment file (.py); local or URL.
        output: The YAML file to write.
        overwrite: Replace OUTPUT if it exists.
    """
    if storage.exists(output) and not overwrite:
        raise ConfigError(f"{output} exists; pass --overwrite to replace it")
    if input.endswith(".py"):
        from olmo_fn.recipes import load_recipe

        text, notes = _to_original(load_recipe(input).config())
    else:
        raw_text = storage.read_bytes(input)
        raw = load_yaml(raw_text, input)
        if is_olmo_fn_config(raw):
            text, notes = _to_original(config_from_dict(TrainConfig, raw))
        else:
            cfg, notes = train_config_from_original(read_original_config(raw_text, where=input))
            text = dump_yaml(cfg)
    storage.write_bytes(output, text.encode())
    for note in notes:
        print(f"{input}: {note}")
    print(f"wrote {output}")


def _to_original(cfg: TrainConfig) -> tuple[str, list[str]]:
    tree, notes = original_from_train_config(cfg)
    return dump_yaml(tree), notes


if __name__ == "__main__":
    run_tool(convert_config)
