"""Turn a sharded olmo_fn checkpoint (step{N}/) into a native unsharded one (model/optim safetensors)."""

from __future__ import annotations

import tyro

from olmo_fn.checkpoint.load import unshard
from olmo_fn.launch import run_tool


def main(
    input: tyro.conf.Positional[str], output: tyro.conf.Positional[str], overwrite: bool = False
) -> None:
    """Unshard INPUT (a sharded checkpoint folder or URL) into the new folder OUTPUT.

    Args:
        input: Sharded checkpoint folder (local path or fsspec URL).
        output: Folder to create for the unsharded checkpoint (written under a temporary name, moved into
            place when complete).
        overwrite: Replace an existing OUTPUT.
    """
    unshard(input, output, overwrite=overwrite)
    print(f"wrote {output}")


if __name__ == "__main__":
    run_tool(main)
