"""Turn a sharded olmo_fn checkpoint (step{N}/) into a native unsharded one (model/optim safetensors)."""

from __future__ import annotations

from typing import Annotated

import tyro

from olmo_fn.checkpoint.load import unshard
from olmo_fn.launch import run_tool


def main(
    input: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="INPUT")],
    output: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="OUTPUT")],
    overwrite: bool = False,
) -> None:
    """Unshard INPUT (a sharded checkpoint folder or URL) into the new folder OUTPUT, for example
    `python tools/unshard.py runs/my-run/step1000 runs/my-run/step1000-unsharded`.

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
