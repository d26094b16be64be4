"""Batched generation with a static KV cache: one prefill forward, then one single-token step per new token.

Prompts of different lengths are left-padded; positions count real tokens only and padding keys are masked,
so each row gets the tokens it would get alone. The cache length is rounded up to a multiple of 64, so the
(optionally compiled) decode step sees the same shapes for every prompt of a similar length.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from olmo_fn.errors import ConfigError
from olmo_fn.model.kv_cache import KVCache, new_cache
from olmo_fn.model.transformer import check_token_ids
from olmo_fn.sampling import SamplingConfig, next_tokens

CACHE_MULTIPLE = 64
SYNC_EVERY = {"cpu": 1}
"""Decode steps between host checks of "has every row stopped?" (8 where a check waits on an accelerator)."""
_compiled: dict[tuple[str, str], Callable] = {}


@dataclass
class Generation:
    """New tokens [B, N] (pad_token_id after a row stopped) and each row's count of new tokens [B]."""

    tokens: torch.Tensor
    lengths: torch.Tensor

    def row(self, i: int) -> list[int]:
        """Row i's new tokens, without the padding after its stop."""
        return self.tokens[i, : int(self.lengths[i])].tolist()


@dataclass
class Decoding:
    """Everything a decode step reads and updates, on the model's device: a step needs no host sync."""

    token: torch.Tensor
    """[B, 1] the token fed next."""
    positions: torch.Tensor
    """[B, 1] its RoPE position (counting real tokens only)."""
    out: torch.Tensor
    """[B, N] new tokens so far, pad after a row stopped."""
    lengths: torch.Tensor
    """[B] new tokens per row, the stopping one included."""
    done: torch.Tensor
    """[B] whether a row stopped."""
    tail: torch.Tensor
    """[B, W] the last W new tokens (-1 before the first), W = the longest stop sequence."""
    index: torch.Tensor
    """[] the index in `out` of the next new token."""
    seen: torch.Tensor | None
    """[B, V] tokens in the prompt or generated (for the repetition penalty), else None."""


@dataclass(frozen=True)
class StopRule:
    """When a row stops besides max_new_tokens: EOS, token sequences, or strings in the decoded text.

    EOS and token sequences are checked on the device, inside the (compiled) step; strings need the text, so
    they cost a host transfer per token."""

    eos_token_id: int | None = None
    sequences: tuple[tuple[int, ...], ...] = ()
    strings: tuple[str, ...] = ()
    decode: Callable[[list[int]], str] | None = None

    def hit(self, new: list[int]) -> bool:
        """Whether a row whose new tokens are `new` has just stopped (the host-side rule, strings included)."""
        if self.eos_token_id is not None and new[-1] == self.eos_token_id:
            return True
        if any(len(s) and tuple(new[-len(s) :]) == s for s in self.sequences):
            return True
        return self.hit_string(new)

    def hit_string(self, new: list[int]) -> bool:
        """Whether the decoded text of `new` holds a stop string."""
        return (
            bool(self.strings)
            and self.decode is not None
            and any(s in self.decode(new) for s in self.strings)
        )

    def stopped(self, state: Decoding) -> torch.Tensor:
        """[B] rows whose newest token (state.tail[:, -1]) ends a stop sequence or is EOS, on the device."""
        hit = torch.zeros_like(state.done)
        if self.eos_token_id is not None:
            hit |= state.tail[:, -1] == self.eos_token_id
        for seq in self.sequences:
            if seq:
                target = torch.tensor(seq, device=hit.device)
                hit |= (state.tail[:, -len(seq) :] == target).all(-1)
        return hit


def advance(state: Decoding, token: torch.Tensor, stop: StopRule, pad: int) -> None:
    """Record the [B] next tokens in `state` (pad for stopped rows) and update who stopped, in place."""
    token = token.masked_fill(state.done, pad)
    state.out.index_copy_(1, state.index.view(1), token[:, None])
    state.lengths.add_((~state.done).long())
    state.tail.copy_(torch.cat([state.tail[:, 1:], token[:, None]], dim=1))
    state.done.logical_or_(stop.stopped(state))
    state.token.copy_(token[:, None])
    if state.seen is not None:
        state.seen.scatter_(1, state.token, True)
    state.index.add_(1)


def _step(model: nn.Module, ids: torch.Tensor, positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """[B, V] last-position logits of feeding ids [B, T] at cache.slots."""
    return model(ids, positions=positions, cache=cache)[:, -1]


def _token_step(model: nn.Module, state: Decoding, cache: KVCache, sampling: SamplingConfig, stop: StopRule,
                pad: int, generator: torch.Generator | None = None, forward: Callable = _step) -> None:  # fmt: skip
    """One decode step: the forward, the pick, the bookkeeping. Greedy, it is compiled whole into one graph;
    a draw from a torch.Generator does not trace, so sampling compiles only `forward`."""
    logits = forward(model, state.token, state.positions, cache)
    advance(
        state, next_tokens(logits[:, : model.config.vocab_size], state.seen, sampling, generator), stop, pad
    )
    state.positions.add_(1)
    cache.slots.add_(1)


def _prefill(model: nn.Module, ids: torch.Tensor, positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """The prompt's forward: [B, V] logits at its last position (a separate graph, dynamic in the width)."""
    return _step(model, ids, positions, cache)


def compiled(fn: Callable, device_type: str) -> Callable:
    """fn torch.compile'd once per process and device type (the prompt's forward dynamic in its width)."""
    key = (fn.__name__, device_type)
    if key not in _compiled:
        # On CPU a C++ wrapper calls the ~100 small kernels of a step faster than Python does.
        options = {"cpp_wrapper": True} if device_type == "cpu" else {}
        dynamic = None if fn is _prefill else False
        _compiled[key] = torch.compile(fn, fullgraph=True, dynamic=dynamic, options=options)
    return _compiled[key]


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
    on_step(tokens [B], done [B]) sees each step's tokens as they come (for streaming; it costs a host transfer
    per token, as stop strings do); compile: torch.compile the prompt's forward and the decode step (on CPU with a
    C++ wrapper), the greedy step whole: forward, argmax, stop rules and bookkeeping in one graph. A step never
    waits for the host: rows that stopped are tracked on the device, and the loop asks whether all did every
    SYNC_EVERY steps (every step on CPU, where asking is free).
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
    cache = new_cache(cfg, batch, length, key_mask, model.embeddings.weight.dtype, device, rings=True)
    state = _start(
        input_ids,
        mask,
        max_new_tokens,
        stop,
        pad,
        cfg.vocab_size if sampling.repetition_penalty != 1.0 else None,
    )
    generator = torch.Generator(device=device).manual_seed(sampling.seed) if sampling.do_sample else None
    was_training = model.training
    model.eval()
    try:
        cache.slots, cache.prefill = torch.arange(width, device=device), True
        prefill = compiled(_prefill, device.type) if compile else _prefill
        logits = prefill(model, input_ids, (mask.cumsum(-1) - 1).clamp(min=0), cache)
        cache.prefill = False
        advance(state, next_tokens(logits[:, : cfg.vocab_size], state.seen, sampling, generator), stop, pad)
        cache.slots = torch.tensor([width], device=device)
        return _decode_loop(model, state, cache, sampling, stop, pad, generator, on_step, compile)
    finally:
        model.train(was_training)


def _start(ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int, stop: StopRule, pad: int,
           penalty_vocab: int | None) -> Decoding:  # fmt: skip
    """The state before the first new token: positions after each row's real tokens, nothing stopped."""
    batch, device = ids.shape[0], ids.device
    seen = None
    if penalty_vocab is not None:  # the prompt's tokens count as seen; the extra last column takes padding
        seen = torch.zeros(batch, penalty_vocab + 1, dtype=torch.bool, device=device)
        seen = seen.scatter_(1, ids.masked_fill(mask == 0, penalty_vocab), True)[
            :, :penalty_vocab
        ].contiguous()
    tail = max([1, *(len(s) for s in stop.sequences)])
    long = dict(dtype=torch.long, device=device)
    return Decoding(
        token=torch.zeros(batch, 1, **long),
        positions=mask.sum(-1, keepdim=True),
        out=torch.full((batch, max_new_tokens), pad, **long),
        lengths=torch.zeros(batch, **long),
        done=torch.zeros(batch, dtype=torch.bool, device=device),
        tail=torch.full((batch, tail), -1, **long),
        index=torch.zeros((), **long),
        seen=seen,
    )


def _decode_loop(model: nn.Module, state: Decoding, cache: KVCache, sampling: SamplingConfig, stop: StopRule,
                 pad: int, generator: torch.Generator | None, on_step: Callable | None, compile: bool) -> Generation:  # fmt: skip
    """Feed each new token back until every row stopped or the new tokens are out (the first is picked)."""
    new = state.out.shape[1]
    device_type = state.out.device.type
    sync_every = SYNC_EVERY.get(device_type, 8)
    if not sampling.do_sample:
        step = compiled(_token_step, device_type) if compile else _token_step
    else:
        forward = compiled(_step, device_type) if compile else _step
        step = functools.partial(_token_step, generator=generator, forward=forward)
    for i in range(1, new + 1):
        if stop.strings:  # the text is on the host: the one rule checked there
            for b in (~state.done).nonzero().flatten().tolist():
                if stop.hit_string(state.out[b, :i].tolist()):
                    state.done[b] = True
        if on_step is not None:
            on_step(state.out[:, i - 1].cpu(), state.done.cpu())
        if i == new or (i % sync_every == 0 or stop.strings) and bool(state.done.all()):
            break
        with torch.compiler.set_stance("default", skip_guard_eval_unsafe=compile and i > 1):
            # after the first step every step has its shapes and model: only the guards that pick the graph run
            step(model, state, cache, sampling, stop, pad)
    lengths = state.lengths.cpu()  # steps after every row stopped (SYNC_EVERY > 1) only added padding
    return Generation(state.out[:, : int(lengths.max())].cpu(), lengths)
