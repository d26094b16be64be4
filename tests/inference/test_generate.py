"""generate(): the cache against full forwards, left padding, stop rules, seeded sampling, compile."""

import pytest
import torch

from olmo_fn.errors import ConfigError
from olmo_fn.generate import SYNC_EVERY, StopRule, generate, left_pad
from olmo_fn.model.kv_cache import new_cache
from olmo_fn.sampling import SamplingConfig

from .helpers import CASES, config, prompts, random_model


@pytest.mark.parametrize("case", sorted(CASES))
def test_cached_steps_give_the_logits_of_a_full_forward(case):
    cfg = config(case)
    model = random_model(cfg, seed=1)
    ids = torch.tensor(prompts(cfg, lengths=(20,))[0])[None]
    cache = new_cache(cfg, 1, 64, torch.ones(1, 64), torch.float32, ids.device)
    with torch.no_grad():
        full = model(ids)
        cache.slots = torch.arange(8)
        steps = [model(ids[:, :8], cache=cache)[:, -1]]  # prefill 8 tokens, then one at a time
        for t in range(8, 20):
            cache.slots = torch.tensor([t])
            steps.append(model(ids[:, t : t + 1], positions=torch.tensor([t]), cache=cache)[:, -1])
    torch.testing.assert_close(torch.stack(steps, 1), full[:, 7:], rtol=0, atol=2e-5)


@pytest.mark.parametrize("case", ["olmo2-gqa", "olmo1-mqa-tied"])
def test_left_padded_batch_gives_each_prompt_its_own_tokens(case):
    cfg = config(case)
    model = random_model(cfg, seed=2)
    batch = prompts(cfg, lengths=(9, 2, 15, 5), seed=4)
    ids, mask = left_pad(batch, cfg.pad_token_id)
    together = generate(model, ids, mask, max_new_tokens=20)
    for i, p in enumerate(batch):
        alone = generate(model, torch.tensor([p]), max_new_tokens=20)
        assert together.row(i) == alone.row(0)
        naive, x = [], torch.tensor([p])  # no cache: recompute the whole prefix each step
        with torch.no_grad():
            for _ in range(len(alone.row(0))):
                naive.append(int(model(x)[0, -1, : cfg.vocab_size].argmax()))
                x = torch.cat([x, torch.tensor([[naive[-1]]])], 1)
        assert naive == alone.row(0)


def test_stop_at_eos_sequences_and_strings_then_pad():
    cfg = config("olmo2-gqa")
    model = random_model(cfg, seed=2)
    ids = torch.tensor([prompts(cfg, lengths=(6,))[0]])
    free = generate(model, ids, max_new_tokens=16, stop=StopRule()).row(0)
    assert len(free) == 16
    k = next(i for i in range(2, 16) if free[i] not in free[:i])  # first new token not seen before
    at_eos = generate(model, ids, max_new_tokens=16, stop=StopRule(eos_token_id=free[k]))
    assert at_eos.row(0) == free[: k + 1]
    by_seq = generate(model, ids, max_new_tokens=16, stop=StopRule(sequences=((free[k - 1], free[k]),)))
    assert by_seq.row(0) == free[: k + 1]
    decode = lambda toks: " ".join(f"t{t}" for t in toks)  # noqa: E731
    by_text = generate(model, ids, max_new_tokens=16, stop=StopRule(strings=(f"t{free[k]}",), decode=decode))
    assert by_text.row(0) == free[: k + 1]
    two = torch.cat([ids, ids.flip(1)])
    mixed = generate(model, two, max_new_tokens=16, stop=StopRule(eos_token_id=free[k]), pad_token_id=0)
    if len(mixed.row(1)) > k + 1:  # the rows stop apart: the stopped row is padded
        assert mixed.tokens[0, k + 1 :].eq(0).all()


@pytest.mark.slow
def test_stops_kept_on_the_device_match_the_host_rule(monkeypatch):
    """Eager, compiled (greedy compiles as one graph) and synced every 4 steps: the same rows, on an OLMo 3
    model whose sliding layer (window 6) wraps its ring."""
    cfg = config("olmo3-window-yarn")
    model = random_model(cfg, seed=2)
    ids, mask = left_pad(prompts(cfg, lengths=(6, 3), seed=1), cfg.pad_token_id)
    free = generate(model, ids, mask, max_new_tokens=16, stop=StopRule())
    rows = [free.row(0), free.row(1)]
    rule = StopRule(eos_token_id=rows[1][9], sequences=((rows[0][4], rows[0][5]), (7, 7, 7)))
    ends = [next((i + 1 for i in range(16) if rule.hit(r[: i + 1])), 16) for r in rows]
    eager = generate(model, ids, mask, max_new_tokens=16, stop=rule, pad_token_id=0)
    compiled = generate(model, ids, mask, max_new_tokens=16, stop=rule, pad_token_id=0, compile=True)
    monkeypatch.setitem(SYNC_EVERY, "cpu", 4)  # as on an accelerator: steps after the stops add only padding
    sparse = generate(model, ids, mask, max_new_tokens=16, stop=rule, pad_token_id=0)
    for got in (eager, compiled, sparse):
        assert got.lengths.tolist() == ends and got.tokens.shape == (2, max(ends))
        for i in range(2):
            assert got.row(i) == rows[i][: ends[i]] and got.tokens[i, ends[i] :].eq(0).all()


def test_the_prompt_attends_without_a_dense_bias(monkeypatch):
    """Prefill attends over the prompt's own keys under a SparseMask: no [B, 1, T, L] bias for a long prompt."""
    from olmo_fn.model import layers

    seen, attention = [], layers.attention

    def spy(q, k, v, bias=None):
        seen.append((q.shape[2], k.shape[2], type(bias).__name__))
        return attention(q, k, v, bias)

    monkeypatch.setattr(layers, "attention", spy)
    cfg = config("olmo3-window-yarn")
    ids, mask = left_pad(prompts(cfg, lengths=(30, 11), seed=2), cfg.pad_token_id)
    generate(random_model(cfg, seed=1), ids, mask, max_new_tokens=3)
    prefill, decode = seen[: cfg.n_layers], seen[cfg.n_layers :]
    assert prefill == [(30, 30, "SparseMask")] * cfg.n_layers  # the prompt's own 30 keys, not the 64 slots
    # decode: the full layer over its 64 slots, the sliding one over a ring of its 6-token window
    assert decode and {(q, k, kind) for q, k, kind in decode} == {(1, 64, "Tensor"), (1, 6, "Tensor")}


def test_seeded_sampling_is_reproducible_and_streamed():
    cfg = config("olmo1-clipqkv")
    model = random_model(cfg, seed=5)
    ids, mask = left_pad(prompts(cfg, lengths=(4, 8)), cfg.pad_token_id)
    sampling = SamplingConfig(
        do_sample=True, temperature=0.9, top_k=50, top_p=0.95, repetition_penalty=1.3, seed=7
    )
    seen = []
    first = generate(
        model, ids, mask, max_new_tokens=12, sampling=sampling, on_step=lambda t, d: seen.append(t)
    )
    again = generate(model, ids, mask, max_new_tokens=12, sampling=sampling)
    other = generate(model, ids, mask, max_new_tokens=12, sampling=SamplingConfig(do_sample=True, seed=8))
    assert torch.equal(first.tokens, again.tokens) and not torch.equal(first.tokens, other.tokens)
    assert torch.equal(torch.stack(seen, 1), first.tokens)


def test_bad_requests_are_refused():
    cfg = config("olmo2-tied")
    model = random_model(cfg)
    with pytest.raises(ConfigError, match="max_sequence_length"):
        generate(model, torch.ones(1, 90, dtype=torch.long), max_new_tokens=10)
    with pytest.raises(ConfigError, match="decode"):
        generate(model, torch.ones(1, 3, dtype=torch.long), stop=StopRule(strings=("x",)))
    with pytest.raises(ConfigError, match="at least one token"):
        left_pad([[1], []], 0)
