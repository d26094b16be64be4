"""Batched generation with a static KV cache: one prefill forward, then one single-token step per new token.

Prompts of different lengths are left-padded; positions count real tokens only and padding keys are masked,
so each row gets the tokens it would get alone. The cache length is rounded up to a multiple of 64, so the
(optionally compiled) decode step sees the same shapes for every prompt of a similar length.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from olmo_fn.errors import ConfigError
from olmo_fn.model.kv_cache import KVCache, new_cache
from olmo_fn.model.transformer import check_token_ids
from olmo_fn.sampling import SamplingConfig, next_tokens

CACHE_MULTIPLE = 64
_compiled: dict[str, Callable] = {}


@dataclass
class Generation:
    """New tokens [B, N] (pad_token_id after a row stopped) and each row's count of new tokens [B]."""

    tokens: torch.Tensor
    lengths: torch.Tensor

    def row(self, i: int) -> list[int]:
        """Row i's new tokens, without the padding after its stop."""
        return self.tokens[i, : int(self.lengths[i])].tolist()


def _step(model: nn.Module, ids: torch.Tensor, positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """[B, V] last-position logits of feeding ids [B, T] at cache.slots."""
    return model(ids, positions=positions, cache=cache)[:, -1]


def decode_step(compile: bool, device_type: str = "cpu") -> Callable:
    """The single-token step, eager or torch.compile'd (compiled once per process, device type and shape)."""
    if not compile:
        return _step
    if device_type not in _compiled:
        # On CPU a C++ wrapper calls the ~100 small kernels of a step faster than Python does.
        options = {"cpp_wrapper": True} if device_type == "cpu" else {}
        _compiled[device_type] = torch.compile(_step, fullgraph=True, dynamic=False, options=options)
    return _compiled[device_type]


def left_pad(prompts: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists into ([B, T] ids, [B, T] mask with 1 for real tokens)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ConfigError("every prompt needs at least one token")
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(list(p), dtype=torch.long)
        mask[i, width - len(p) :] = 1
    return ids, mask


@dataclass(frozen=True)
class StopRule:
    """When a row stops besides max_new_tokens: EOS, token sequences, or strings in the decoded text."""

    eos_token_id: int | None = None
    sequences: tuple[tuple[int, ...], ...] = ()
    strings: tuple[str, ...] = ()
    decode: Callable[[list[int]], str] | None = None

    def hit(self, new: list[int]) -> bool:
        """Whether a row whose new tokens are `new` has just stopped."""
        if self.eos_token_id is not None and new[-1] == self.eos_token_id:
            return True
        if any(len(s) and tuple(new[-len(s) :]) == s for s in self.sequences):
            return True
        return (
            bool(self.strings)
            and self.decode is not None
            and any(s in self.decode(new) for s in self.strings)
        )


def _check(
    model: nn.Module, ids: torch.Tensor, max_new_tokens: int, sampling: SamplingConfig, stop: StopRule
) -> None:
    """Refuse requests that cannot run, naming the setting."""
    cfg = model.config
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be >= 1 (got {max_new_tokens})")
    if ids.shape[1] + max_new_tokens > cfg.max_sequence_length:
        raise ConfigError(
            f"prompt ({ids.shape[1]} tokens) + max_new_tokens ({max_new_tokens}) exceeds the model's "
            f"max_sequence_length ({cfg.max_sequence_length}); shorten the prompt or ask for fewer tokens"
        )
    sampling.validate()
    check_token_ids(ids, cfg.vocab_size)
    if stop.strings and stop.decode is None:
        raise ConfigError("stop strings need a decode function (token ids -> text)")


@torch.no_grad()
def generate(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    max_new_tokens: int = 32,
    sampling: SamplingConfig | None = None,
    stop: StopRule | None = None,
    pad_token_id: int | None = None,
    on_step: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
    compile: bool = False,
) -> Generation:
    """Continue each left-padded prompt of input_ids [B, T] (attention_mask [B, T], 1 = real token).

    sampling: greedy by default; stop: EOS / token sequences / strings (default: the model's eos_token_id);
    on_step(tokens [B], done [B]) sees each step's tokens as they come (for streaming); compile: torch.compile
    the decode step (on CPU with a C++ wrapper; after the first decode step only the guards that pick between
    compiled graphs run, as every later step has the first one's shapes and model).
    """
    cfg = model.config
    sampling = sampling if sampling is not None else SamplingConfig()
    stop = stop if stop is not None else StopRule(eos_token_id=cfg.eos_token_id)
    _check(model, input_ids, max_new_tokens, sampling, stop)
    pad = pad_token_id if pad_token_id is not None else (cfg.pad_token_id or 0)
    device = input_ids.device
    batch, width = input_ids.shape
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(device)
    length = -(-(width + max_new_tokens) // CACHE_MULTIPLE) * CACHE_MULTIPLE
    key_mask = torch.cat([mask, mask.new_ones(batch, length - width)], dim=1)
    dtype = model.embeddings.weight.dtype
    cache = new_cache(cfg, batch, length, key_mask, dtype, device)
    seen = None
    if sampling.repetition_penalty != 1.0:
        seen = torch.zeros(batch, cfg.vocab_size + 1, dtype=torch.bool, device=device)  # last column: padding
        seen = seen.scatter_(1, input_ids.masked_fill(mask == 0, cfg.vocab_size), True)[:, : cfg.vocab_size]
    generator = torch.Generator(device=device).manual_seed(sampling.seed) if sampling.do_sample else None
    was_training = model.training
    model.eval()
    try:
        cache.slots = torch.arange(width, device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = _step(model, input_ids, positions, cache)
        return _decode_loop(model, logits, mask.sum(-1, keepdim=True), cache, seen, generator, sampling, stop,
                            max_new_tokens, pad, on_step, decode_step(compile, device.type))  # fmt: skip
    finally:
        model.train(was_training)


def _decode_loop(
    model: nn.Module,
    logits: torch.Tensor,
    n_real: torch.Tensor,
    cache: KVCache,
    seen: torch.Tensor | None,
    generator: torch.Generator | None,
    sampling: SamplingConfig,
    stop: StopRule,
    max_new_tokens: int,
    pad: int,
    on_step: Callable[[torch.Tensor, torch.Tensor], None] | None,
    step: Callable,
) -> Generation:
    """Pick a token from logits, feed it back, until every row stopped or max_new_tokens are out."""
    vocab, batch = model.config.vocab_size, logits.shape[0]
    width = int(cache.slots[-1]) + 1
    out = torch.full((batch, max_new_tokens), pad, dtype=torch.long)
    lengths = torch.zeros(batch, dtype=torch.long)
    done = torch.zeros(batch, dtype=torch.bool)
    for i in range(max_new_tokens):
        token = next_tokens(logits[:, :vocab], seen, sampling, generator).cpu()
        token = token.masked_fill(done, pad)
        out[:, i] = token
        lengths += (~done).long()
        if stop.sequences or stop.strings:
            for b in (~done).nonzero().flatten().tolist():
                done[b] = stop.hit(out[b, : i + 1].tolist())
        elif stop.eos_token_id is not None:  # the common case, without a Python loop over rows
            done |= token == stop.eos_token_id
        if on_step is not None:
            on_step(token, done.clone())
        if bool(done.all()) or i == max_new_tokens - 1:
            return Generation(out[:, : i + 1], lengths)
        ids = token.to(logits.device)[:, None]
        if seen is not None:
            seen.scatter_(1, ids, True)
        cache.slots = torch.tensor([width + i], device=logits.device)
        if i == 0 or step is _step:
            logits = step(model, ids, n_real + i, cache)
        else:  # later steps repeat the first one's shapes and model: only guards that pick the graph run
            with torch.compiler.set_stance("default", skip_guard_eval_unsafe=True):
                logits = step(model, ids, n_real + i, cache)
    raise AssertionError("unreachable")
