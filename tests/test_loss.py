"""Loss: cross-entropy with masks, z-loss, both normalisations, and the chunked form."""

import pytest
import torch
import torch.nn.functional as F

from olmo_fn.loss import IGNORE_INDEX, chunked_lm_loss, lm_loss, loss_denominator, shift_labels


def _batch(seed=0, b=3, t=11, v=37):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, v, generator=g) * 3
    labels = torch.randint(0, v, (b, t), generator=g)
    labels[0, :4] = IGNORE_INDEX
    labels[:, -1] = IGNORE_INDEX
    return logits, labels


def test_cross_entropy_equals_torch_mean_over_label_tokens():
    logits, labels = _batch()
    out = lm_loss(logits, labels)
    ref = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(out.ce / loss_denominator(labels, "label_tokens"), ref)
    assert out.z.item() == 0.0


def test_z_loss_is_multiplier_times_logsumexp_squared_on_label_positions():
    logits, labels = _batch(1)
    out = lm_loss(logits, labels, z_loss_multiplier=1e-4)
    valid = labels != IGNORE_INDEX
    ref = 1e-4 * (logits.logsumexp(-1)[valid] ** 2).sum()
    torch.testing.assert_close(out.z, ref)
    torch.testing.assert_close(out.total, out.ce + out.z)


def test_batch_tokens_normalisation_is_the_originals():
    _, labels = _batch()
    assert loss_denominator(labels, "batch_tokens") == labels.numel()
    assert loss_denominator(labels, "label_tokens") == int((labels != IGNORE_INDEX).sum())


def test_shift_labels_applies_every_mask_to_the_target():
    ids = torch.arange(10, 20).reshape(2, 5)
    label_mask = torch.tensor([[1, 1, 0, 1, 1], [1, 1, 1, 1, 1]], dtype=torch.bool)
    attention_mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    instance_mask = torch.tensor([True, False])
    labels = shift_labels(ids, label_mask, attention_mask, instance_mask)
    assert labels.tolist() == [[11, -100, 13, -100, -100], [-100] * 5]
    assert shift_labels(ids).tolist() == [[11, 12, 13, 14, -100], [16, 17, 18, 19, -100]]


@pytest.mark.parametrize("z", [0.0, 1e-2])
@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunked_equals_plain_in_value_and_gradient(z, chunk):
    g = torch.Generator().manual_seed(2)
    hidden = torch.randn(2, 9, 16, generator=g, requires_grad=True)
    weight = torch.randn(40, 16, generator=g, requires_grad=True)
    _, labels = _batch(3, 2, 9, 40)
    plain = lm_loss(hidden @ weight.t(), labels, z)
    (plain.total * 0.37).backward()
    gh, gw = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    chunked = chunked_lm_loss(hidden, weight, labels, z, chunk)
    (chunked.total * 0.37).backward()
    for a, b in zip(chunked, plain):
        torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(hidden.grad, gh, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(weight.grad, gw, rtol=1e-5, atol=1e-6)


def test_chunked_without_grad_gives_the_same_value():
    hidden, weight = torch.randn(2, 9, 16), torch.randn(40, 16)
    _, labels = _batch(4, 2, 9, 40)
    with torch.no_grad():
        out = chunked_lm_loss(hidden, weight, labels, 1e-3, 5)
    torch.testing.assert_close(out.total, lm_loss(hidden @ weight.t(), labels, 1e-3).total)
