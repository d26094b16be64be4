"""Per-instance computations: OLMo 2's repeated n-gram filter and document lengths."""

from __future__ import annotations

import numpy as np

from olmo_fn.config import InstanceFilterConfig


def max_repetition_count(tokens: np.ndarray, max_period: int, min_period: int = 1) -> int:
    """Most back-to-back repeats of any n-gram with period in [min_period, max_period] (0 if under 3)."""
    n = len(tokens)
    best = 0
    for period in range(max(min_period, 1), min(max_period, n // 3) + 1):
        same = np.concatenate([[False], tokens[period:] == tokens[:-period], [False]])
        edges = np.flatnonzero(np.diff(same.view(np.int8)))
        if edges.size == 0:
            continue
        run = int((edges[1::2] - edges[::2]).max())
        times = (run + period) // period
        if times >= 3:  # the original's detector only reports periods seen at least three times
            best = max(best, times)
    return best


def keep_instance(tokens: np.ndarray, cfg: InstanceFilterConfig) -> bool:
    """False when an n-gram repeats at least repetition_max_count times in a row (OLMo 2's filter)."""
    count = max_repetition_count(tokens, cfg.repetition_max_period, cfg.repetition_min_period)
    return count < cfg.repetition_max_count


def all_true(shape: int | tuple[int, ...]) -> np.ndarray:
    """A new bool array of True (np.ones without its Python-level overhead, paid on every batch)."""
    out = np.empty(shape, dtype=np.bool_)
    out.fill(True)
    return out
