"""The train step: split-independent updates, clipping, and refusal of non-finite steps."""

import dataclasses

import pytest
import torch

from olmo_fn.config import ModelConfig, OptimizerConfig
from olmo_fn.errors import TrainingError
from olmo_fn.model import Transformer, init_weights
from olmo_fn.optim import build_optimizer
from olmo_fn.train_step import grad_norm_and_clip, train_step

CFG = ModelConfig(d_model=64, n_heads=4, n_kv_heads=2, n_layers=2, mlp_hidden_size=256, vocab_size=200,
                  embedding_size=256, eos_token_id=0, pad_token_id=1, max_sequence_length=32,
                  layer_norm_type="rms", layer_norm_with_affine=True, attention_layer_norm=True, norm_after=True)  # fmt: skip


def _setup():
    model = Transformer(CFG)
    init_weights(model, CFG, seed=1)
    # The original default eps 1e-5: with eps 1e-8, Adam turns fp32 rounding of near-zero gradients
    # (a different summation order per split) into lr-sized differences, whatever the split code does.
    return model, build_optimizer(model, OptimizerConfig(learning_rate=1e-2, eps=1e-5))


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, CFG.vocab_size, (8, 32), generator=g)
    mask = torch.rand(8, 32, generator=g) > 0.3
    return {"input_ids": ids, "label_mask": mask}


@pytest.mark.parametrize("normalization", ["batch_tokens", "label_tokens"])
def test_update_does_not_depend_on_the_micro_batch_split(normalization):
    results = []
    for micro in (8, 2, 1):  # 1x8, 4x2, 8x1
        model, opt = _setup()
        for step in range(3):
            train_step(model, opt, _batch(step), lr=1e-3, microbatch_size=micro, max_grad_norm=0.5,
                       z_loss_multiplier=1e-3, normalization=normalization)  # fmt: skip
        results.append(model.state_dict())
    for other in results[1:]:
        for name, tensor in results[0].items():
            assert (tensor - other[name]).abs().max() < 1e-6, name


def test_reported_loss_is_the_mean_over_label_tokens_and_clip_caps_the_norm():
    model, opt = _setup()
    batch = _batch(5)
    from olmo_fn.loss import lm_loss
    from olmo_fn.train_step import batch_labels

    labels = batch_labels(batch)
    with torch.no_grad():
        expected = lm_loss(model(batch["input_ids"]), labels).ce / (labels != -100).sum()
    metrics = train_step(model, opt, batch, lr=1e-2, microbatch_size=4, max_grad_norm=None)
    assert metrics.ce_loss == pytest.approx(expected.item(), rel=1e-5)
    assert metrics.label_tokens == int((labels != -100).sum()) and metrics.batch_tokens == 8 * 32

    for p in model.parameters():
        p.grad = torch.ones_like(p)
    norm = grad_norm_and_clip(list(model.parameters()), max_norm=0.1)
    assert norm.item() == pytest.approx(sum(p.numel() for p in model.parameters()) ** 0.5, rel=1e-5)
    assert grad_norm_and_clip(list(model.parameters()), None).item() == pytest.approx(0.1, rel=1e-4)


def test_non_finite_loss_stops_without_touching_the_parameters():
    model, opt = _setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.lm_head.weight[0, 0] = float("nan")
    before["lm_head.weight"] = model.lm_head.weight.clone()
    with pytest.raises(TrainingError, match="non-finite"):
        train_step(model, opt, _batch(), lr=1e-2, microbatch_size=4, max_grad_norm=1.0)
    after = model.state_dict()
    for name, tensor in before.items():
        assert torch.equal(tensor, after[name]) or (tensor.isnan() == after[name].isnan()).all(), name
    assert all(p.grad is None for p in model.parameters())
    assert not opt.state  # the optimizer never stepped


def test_tied_head_trains():
    cfg = dataclasses.replace(CFG, weight_tying=True)
    model = Transformer(cfg)
    init_weights(model, cfg, 0)
    opt = build_optimizer(model, OptimizerConfig(learning_rate=1e-2))
    first = train_step(model, opt, _batch(), lr=1e-2, microbatch_size=8, max_grad_norm=1.0).ce_loss
    for _ in range(5):
        last = train_step(model, opt, _batch(), lr=1e-2, microbatch_size=8, max_grad_norm=1.0).ce_loss
    assert last < first


def test_document_masking_trains_each_packed_document_as_if_alone():
    """ce_sum of one packed row [doc A, doc B] under document_eos = A's and B's own sums, plus the label that
    crosses the boundary (A's EOS predicting B's first token) scored from A alone."""
    g = torch.Generator().manual_seed(3)
    a, b = (
        torch.randint(2, CFG.vocab_size, (13,), generator=g),
        torch.randint(2, CFG.vocab_size, (19,), generator=g),
    )
    a[-1] = b[-1] = CFG.eos_token_id
    sums = {}
    for name, ids, eos in (("packed", torch.cat([a, b]), CFG.eos_token_id), ("unmasked", torch.cat([a, b]), None),
                           ("a", a, None), ("b", b, None)):  # fmt: skip
        model, opt = _setup()
        out = train_step(model, opt, {"input_ids": ids[None]}, lr=0.0, microbatch_size=1, max_grad_norm=None,
                         document_eos=eos)  # fmt: skip
        sums[name] = out.ce_sum
    model, _ = _setup()
    with torch.no_grad():
        crossing = torch.nn.functional.cross_entropy(model(a[None])[0, -1], b[0])
    assert sums["packed"] == pytest.approx(sums["a"] + sums["b"] + crossing.item(), rel=1e-5)
    assert abs(sums["unmasked"] - sums["packed"]) > 1e-2
