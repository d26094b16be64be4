"""Logit filters against transformers' processors on the same logits, and seeded draws."""

import pytest
import torch
from transformers import (
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from olmo_fn.errors import ConfigError
from olmo_fn.sampling import (
    SamplingConfig,
    next_tokens,
    process_logits,
    repetition_penalty,
    top_k_filter,
    top_p_filter,
)

V = 97


def _logits(seed: int, batch: int = 5) -> torch.Tensor:
    logits = 3 * torch.randn(batch, V, generator=torch.Generator().manual_seed(seed))
    logits[0, :4] = logits[0, 4]  # ties at the cut-off
    return logits


def _ids(seed: int, batch: int = 5) -> torch.Tensor:
    return torch.randint(0, V, (batch, 11), generator=torch.Generator().manual_seed(seed))


def _seen(ids: torch.Tensor) -> torch.Tensor:
    return torch.zeros(ids.shape[0], V, dtype=torch.bool).scatter_(1, ids, True)


@pytest.mark.parametrize("k", [1, 5, 40, V, 500])
def test_top_k_equals_transformers(k):
    logits, ids = _logits(k), _ids(k)
    assert torch.equal(top_k_filter(logits, k), TopKLogitsWarper(k)(ids, logits.clone()))


@pytest.mark.parametrize("p", [0.01, 0.3, 0.9, 0.999])
def test_top_p_equals_transformers(p):
    logits, ids = _logits(int(p * 100)), _ids(1)
    ours = top_p_filter(logits, p)
    assert torch.equal(ours, TopPLogitsWarper(p)(ids, logits.clone()))
    assert (ours.isfinite().sum(-1) >= 1).all()


@pytest.mark.parametrize("penalty", [0.7, 1.3, 2.0])
def test_repetition_penalty_equals_transformers(penalty):
    logits, ids = _logits(7), _ids(8)
    expected = RepetitionPenaltyLogitsProcessor(penalty)(ids, logits.clone())
    assert torch.equal(repetition_penalty(logits, _seen(ids), penalty), expected)


def test_the_chain_equals_transformers_in_its_order():
    logits, ids = _logits(3), _ids(4)
    cfg = SamplingConfig(do_sample=True, temperature=0.7, top_k=20, top_p=0.8, repetition_penalty=1.2)
    expected = logits.clone()
    for proc in (RepetitionPenaltyLogitsProcessor(1.2), TemperatureLogitsWarper(0.7), TopKLogitsWarper(20),
                 TopPLogitsWarper(0.8)):  # fmt: skip
        expected = proc(ids, expected)
    torch.testing.assert_close(process_logits(logits, _seen(ids), cfg), expected, rtol=0, atol=0)


def test_seeded_draws_repeat_and_follow_the_filter():
    logits = _logits(11, batch=64)
    cfg = SamplingConfig(do_sample=True, top_k=3, seed=5)

    def draws(seed):
        gen = torch.Generator().manual_seed(seed)
        return torch.stack([next_tokens(logits, None, cfg, gen) for _ in range(20)])

    first, again, other = draws(5), draws(5), draws(6)
    assert torch.equal(first, again) and not torch.equal(first, other)
    allowed = logits.topk(3, dim=-1).indices
    assert (first[..., None] == allowed[None]).any(-1).all()
    assert torch.equal(next_tokens(logits, None, SamplingConfig(), None), logits.argmax(-1))


def test_bad_settings_are_refused():
    for bad in (dict(temperature=0.0), dict(top_p=0.0), dict(top_p=1.5), dict(top_k=-1)):
        with pytest.raises(ConfigError):
            SamplingConfig(**bad).validate()
