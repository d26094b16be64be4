"""Convert a transformers OLMo / OLMo 2 folder into a native unsharded olmo_fn checkpoint."""

from __future__ import annotations

import dataclasses

from olmo_fn.checkpoint import storage
from olmo_fn.checkpoint.hf_dir import read_hf_dir
from olmo_fn.checkpoint.native import Content, write_native_dir
from olmo_fn.launch import run_tool


def main(input_dir: str, output_dir: str, overwrite: bool = False) -> None:
    """Read input_dir's config.json and weights; write model.safetensors + config.yaml (`model:`) to output_dir.

    Args:
        input_dir: Hugging Face model folder (or URL) with config.json and safetensors/bin weights.
        output_dir: New folder (or URL) for the olmo_fn checkpoint, written under a temporary name and moved
            into place when complete.
        overwrite: Replace an existing output_dir.
    """
    storage.check_output(output_dir, overwrite, reads=[input_dir])
    state, cfg = read_hf_dir(input_dir)
    config = {"model": dataclasses.asdict(cfg)}
    storage.write_then_publish(
        output_dir, lambda folder: write_native_dir(folder, Content(state, None, None, config), step=0)
    )
    print(f"wrote {output_dir} ({cfg.family}, {len(state)} tensors)")


if __name__ == "__main__":
    run_tool(main)
