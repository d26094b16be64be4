"""Learning-rate schedules, gradient-clip warmup and the original's parameter groups."""

import math

import pytest

from olmo_fn.config import OptimizerConfig, SchedulerConfig
from olmo_fn.model import Transformer
from olmo_fn.model.presets import olmo_tiny
from olmo_fn.optim import build_optimizer, lr_at, max_grad_norm_at

LR = 1e-3


def test_warmup_starts_at_ten_percent_by_default_and_reaches_the_peak():
    cfg = SchedulerConfig(name="cosine_with_warmup", t_warmup=100, alpha_f=0.1)
    assert lr_at(cfg, LR, 0, 1000) == pytest.approx(0.1 * LR)
    assert lr_at(cfg, LR, 50, 1000) == pytest.approx(0.55 * LR)
    assert lr_at(cfg, LR, 100, 1000) == pytest.approx(LR)
    zero = SchedulerConfig(name="cosine_with_warmup", t_warmup=100, warmup_min_lr=0.0)
    assert lr_at(zero, LR, 25, 1000) == pytest.approx(0.25 * LR)


def test_cosine_and_linear_decay_to_alpha_f():
    cos = SchedulerConfig(name="cosine_with_warmup", t_warmup=100, alpha_f=0.1)
    assert lr_at(cos, LR, 550, 1000) == pytest.approx(0.1 * LR + 0.9 * LR * 0.5)
    assert lr_at(cos, LR, 1000, 1000) == pytest.approx(0.1 * LR)
    assert lr_at(cos, LR, 5000, 1000) == pytest.approx(0.1 * LR)
    lin = SchedulerConfig(name="linear_with_warmup", t_warmup=100, alpha_f=0.0)
    assert lr_at(lin, LR, 775, 1000) == pytest.approx(0.25 * LR)


def test_t_max_overrides_the_run_length_and_tokens_work_alike():
    cfg = SchedulerConfig(name="cosine_with_warmup", units="tokens", t_warmup=1e6, t_max=1e9, alpha_f=0.1)
    assert lr_at(cfg, LR, 1e9, 5e9) == pytest.approx(0.1 * LR)
    assert lr_at(cfg, LR, 0.5e6 + 1e6 / 2, 5e9) == pytest.approx(0.1 * LR + 0.9 * LR)  # end of warmup


def test_wsd_inverse_sqrt_constant():
    wsd = SchedulerConfig(name="wsd", t_warmup=10, alpha_f=0.0, decay_fraction=0.2)
    assert lr_at(wsd, LR, 500, 1000) == LR and lr_at(wsd, LR, 800, 1000) == LR
    assert lr_at(wsd, LR, 900, 1000) == pytest.approx(0.5 * LR)
    inv = SchedulerConfig(name="inverse_sqrt_with_warmup", t_warmup=100)
    assert lr_at(inv, LR, 400, 1000) == pytest.approx(LR * math.sqrt(100 / 400))
    assert lr_at(SchedulerConfig(name="constant"), LR, 0, 10) == LR


def test_bolt_on_warmup_after_an_optimizer_reset():
    cfg = SchedulerConfig(name="cosine_with_warmup", t_warmup=100, alpha_f=0.1)
    assert lr_at(cfg, LR, 400, 1000, bolt_on_from=500) == 0.0
    target = lr_at(cfg, LR, 600, 1000)
    assert lr_at(cfg, LR, 550, 1000, bolt_on_from=500) == pytest.approx(0.5 * target)
    assert lr_at(cfg, LR, 700, 1000, bolt_on_from=500) == lr_at(cfg, LR, 700, 1000)


def test_grad_clip_warmup():
    cfg = SchedulerConfig(grad_clip_warmup_steps=1000, grad_clip_warmup_factor=10)
    assert max_grad_norm_at(cfg, 1.0, 1000) == 10.0
    assert max_grad_norm_at(cfg, 1.0, 1001) == 1.0
    assert max_grad_norm_at(cfg, None, 1) is None


@pytest.mark.parametrize("norms, embeddings", [(False, False), (True, False), (True, True)])
def test_parameter_groups_follow_the_decay_flags(norms, embeddings):
    model = Transformer(olmo_tiny())
    opt = build_optimizer(
        model, OptimizerConfig(weight_decay=0.1, decay_norm_and_bias=norms, decay_embeddings=embeddings)
    )
    decayed = {n for g in opt.param_groups if g["weight_decay"] > 0 for n in g["param_names"]}
    assert "blocks.0.attention.q_proj.weight" in decayed and "lm_head.weight" in decayed
    assert ("blocks.0.attention_norm.weight" in decayed) == norms
    assert ("blocks.1.attention.k_norm.weight" in decayed) == norms
    assert ("embeddings.weight" in decayed) == embeddings
    assert opt.param_groups[0]["param_names"] == sorted(opt.param_groups[0]["param_names"])
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_clip_limit_lagged_as_the_original_trainer():
    from olmo_fn.optim import clip_limit

    cfg = SchedulerConfig(grad_clip_warmup_steps=4, grad_clip_warmup_factor=5.0)
    plain = [clip_limit(cfg, 1.0, step, 1) for step in range(1, 7)]
    lagged = [clip_limit(cfg, 1.0, step, 1, lagged=True) for step in range(1, 7)]
    assert plain == [5.0, 5.0, 5.0, 5.0, 1.0, 1.0]
    assert lagged == [1.0, 5.0, 5.0, 5.0, 5.0, 1.0]  # ../shared/fixtures/original_trainer/olmo1 clip_limit
    tokens = SchedulerConfig(units="tokens", grad_clip_warmup_steps=1000, grad_clip_warmup_factor=2.0)
    assert [clip_limit(tokens, 1.0, s, 512) for s in (1, 2, 3)] == [2.0, 1.0, 1.0]  # counted in tokens
