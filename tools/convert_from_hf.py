"""Convert a transformers OLMo / OLMo 2 folder into a native unsharded olmo_fn checkpoint."""

from __future__ import annotations

import dataclasses

from olmo_fn.checkpoint import storage
from olmo_fn.checkpoint.hf_dir import read_hf_dir
from olmo_fn.checkpoint.native import Content, write_native_dir
from olmo_fn.errors import CheckpointError
from olmo_fn.launch import run_tool


def main(input_dir: str, output_dir: str) -> None:
    """Read input_dir's config.json and weights; write model.safetensors + config.yaml (`model:`) to output_dir.

    Args:
        input_dir: Hugging Face model folder (or URL) with config.json and safetensors/bin weights.
        output_dir: New folder (or URL) for the olmo_fn checkpoint; must not exist or be empty.
    """
    if storage.list_names(output_dir):
        raise CheckpointError(f"{output_dir}: exists and is not empty; choose a new output folder")
    state, cfg = read_hf_dir(input_dir)
    config = {"model": dataclasses.asdict(cfg)}
    write_native_dir(output_dir, Content(state, None, None, config), step=0)
    print(f"wrote {output_dir} ({cfg.family}, {len(state)} tensors)")


if __name__ == "__main__":
    run_tool(main)
