"""A static-shape key/value cache for decoding: every buffer is allocated once, so a decode step compiles once.

Keys are cached *rotated* (RoPE applied before the write, as gpt-fast does): a decode step rotates only its
own token, and nothing is re-rotated. A full-attention layer keeps every slot [B, H_kv, L, D]; a key is
visible when its slot is at or before the query's slot and the key mask marks it real (left padding is 0).
With rings (new_cache(rings=True), what generate uses) a sliding-window layer keeps only its window: a ring
of R = min(window, L) entries, slot s stored at s mod R, so entry j holds the latest slot <= the query's
that is congruent to j.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from olmo_fn.config import ModelConfig
from olmo_fn.model import layers


@dataclass
class LayerCache:
    """One layer's key and value buffers and the slots this forward writes."""

    keys: torch.Tensor
    values: torch.Tensor
    slots: torch.Tensor
    ring: bool = False

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | layers.SparseMask
    ) -> torch.Tensor:
        """Write this step's [B, H_kv, T, D] keys/values, then attend q over the cache with the attention that
        training uses (layers.attention) under the cache's mask; a prompt from slot 0 attends over its own."""
        slots, keys, values = self.slots, k, v
        if self.ring:  # only the last R slots are kept, each at slot mod R
            size = self.keys.shape[2]
            slots, keys, values = slots[-size:] % size, k[:, :, -size:], v[:, :, -size:]
        self.keys[:, :, slots] = keys  # index_put_, which the compiler updates in place
        self.values[:, :, slots] = values
        if isinstance(bias, layers.SparseMask):
            return layers.attention(q, k, v, bias)
        return layers.attention(q, self.keys, self.values, bias)


@dataclass
class KVCache:
    """Per-layer buffers [B, H_kv, L or R, D], a [B, L] key mask and the [T] slots of the next forward."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    key_mask: torch.Tensor
    slots: torch.Tensor
    prefill: bool = False
    """The next forward is the prompt's, written from slot 0: it attends over its own keys under a
    SparseMask (memory linear in the prompt's length) instead of a [B, 1, T, L] bias."""
    rings: tuple[bool, ...] = ()
    """Per layer: whether it keeps a ring of its window's slots (empty: no rings)."""
    ring_size: int = 0
    """Entries of each ring (the window)."""

    def layer(self, i: int) -> LayerCache:
        """The view of layer i that Attention.forward writes into."""
        return LayerCache(self.keys[i], self.values[i], self.slots, bool(self.rings) and self.rings[i])

    def mask(self, steps: int, window: int | None = None) -> torch.Tensor | layers.SparseMask:
        """What this forward's `steps` queries attend under: a SparseMask for a prefill, the ring's bias for
        a windowed layer that keeps a ring, else the bias over every slot."""
        if self.prefill:
            return layers.SparseMask(None, window, self.key_mask[:, :steps])
        if window is not None and any(self.rings):
            return self.ring_bias(window)
        return self.bias(torch.float32, window)

    def bias(self, dtype: torch.dtype, window: int | None = None) -> torch.Tensor:
        """Additive [B, 1, T, L] attention bias: causal by slot, padding keys masked, and with a window only
        the `window` slots ending at the query's own."""
        length = self.key_mask.shape[-1]
        key_slots = torch.arange(length, device=self.slots.device)[None, :]
        causal = key_slots <= self.slots[:, None]
        if window is not None:
            causal = causal & (key_slots > self.slots[:, None] - window)
        keep = causal[None, None] & self.key_mask.bool()[:, None, None, :]
        return _additive(keep, dtype)

    def ring_bias(self, window: int) -> torch.Tensor:
        """Additive fp32 [B, 1, T, R] bias over a ring of R entries: entry j holds slot s - ((s - j) mod R)
        for the query at slot s; it is visible when that slot exists, is in the window and is real."""
        size, query = self.ring_size, self.slots[:, None]
        held = query - (query - torch.arange(size, device=query.device)[None, :]) % size  # [T, R]
        keep = (held >= 0) & (held > query - window)
        real = self.key_mask.bool()[:, held.clamp(min=0)]  # [B, T, R]
        return _additive(keep[None, None] & real[:, None], torch.float32)


def _additive(keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, torch.finfo(dtype).min)


def new_cache(
    cfg: ModelConfig,
    batch: int,
    length: int,
    key_mask: torch.Tensor,
    dtype: torch.dtype,
    device: torch.device,
    rings: bool = False,
) -> KVCache:
    """Zeroed buffers for `batch` sequences of up to `length` tokens; key_mask [B, L] marks real tokens.

    rings: sliding-window layers keep only min(window, length) slots (the forwards must then be one prompt
    from slot 0 with cache.prefill set, then one token at a time, as generate does)."""
    kinds = cfg.layer_kinds
    ring = [rings and kind == "sliding" and cfg.sliding_window < length for kind in kinds]
    shapes = [
        (batch, cfg.effective_n_kv_heads, cfg.sliding_window if r else length, cfg.head_dim) for r in ring
    ]
    keys = [torch.zeros(shape, dtype=dtype, device=device) for shape in shapes]
    values = [torch.zeros(shape, dtype=dtype, device=device) for shape in shapes]
    slots = torch.zeros(0, dtype=torch.long, device=device)
    if not any(ring):
        return KVCache(keys, values, key_mask.to(device), slots)
    return KVCache(keys, values, key_mask.to(device), slots, rings=tuple(ring), ring_size=cfg.sliding_window)
