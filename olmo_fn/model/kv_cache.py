"""A static-shape key/value cache for decoding: every buffer is allocated once, so a decode step compiles once.

Keys are cached *rotated* (RoPE applied before the write, as gpt-fast does): a decode step rotates only its
own token, and nothing is re-rotated. Every step attends over the whole buffer [B, H_kv, L, D]; a key is
visible when its slot is at or before the query's slot (and, in a sliding-window layer, within the window)
and the key mask marks it real (left padding is 0).
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

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Write this step's [B, H_kv, T, D] keys/values at the slots, then attend q over the whole cache with
        the attention that training uses (layers.attention), under the cache's bias."""
        self.keys[:, :, self.slots] = k  # index_put_, which the compiler updates in place
        self.values[:, :, self.slots] = v
        return layers.attention(q, self.keys, self.values, bias)


@dataclass
class KVCache:
    """Per-layer buffers of shape [B, H_kv, L, D], a [B, L] key mask and the [T] slots of the next forward."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    key_mask: torch.Tensor
    slots: torch.Tensor

    def layer(self, i: int) -> LayerCache:
        """The view of layer i that Attention.forward writes into."""
        return LayerCache(self.keys[i], self.values[i], self.slots)

    def bias(self, dtype: torch.dtype, window: int | None = None) -> torch.Tensor:
        """Additive [B, 1, T, L] attention bias: causal by slot, padding keys masked, and with a window only
        the `window` slots ending at the query's own."""
        length = self.key_mask.shape[-1]
        key_slots = torch.arange(length, device=self.slots.device)[None, :]
        causal = key_slots <= self.slots[:, None]
        if window is not None:
            causal = causal & (key_slots > self.slots[:, None] - window)
        keep = causal[None, None] & self.key_mask.bool()[:, None, None, :]
        return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(
            ~keep, torch.finfo(dtype).min
        )


def new_cache(
    cfg: ModelConfig,
    batch: int,
    length: int,
    key_mask: torch.Tensor,
    dtype: torch.dtype,
    device: torch.device,
) -> KVCache:
    """Zeroed buffers for `batch` sequences of up to `length` tokens; key_mask [B, L] marks real tokens."""
    shape = (batch, cfg.effective_n_kv_heads, length, cfg.head_dim)
    keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layers)]
    values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layers)]
    slots = torch.zeros(0, dtype=torch.long, device=device)
    return KVCache(keys, values, key_mask.to(device), slots)
