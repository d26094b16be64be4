"""Functions that wrap a model for speed and scale, applied in a fixed order by `parallelize`."""

from __future__ import annotations

from torch import nn


def apply_compile(model: nn.Module) -> None:
    """torch.compile each transformer block in place (one graph per block shape, reused by every block)."""
    for block in model.blocks:
        block.compile()
