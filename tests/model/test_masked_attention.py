"""Document masking and sliding windows without a dense mask: exact, and memory that grows linearly."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from olmo_fn.config import ModelConfig
from olmo_fn.model import Transformer, init_weights, layers
from olmo_fn.model_config import olmo3_layer_types

OLMO3 = ModelConfig(
    d_model=64, n_heads=4, n_kv_heads=2, n_layers=4, mlp_hidden_size=256, vocab_size=250, embedding_size=256,
    eos_token_id=249, pad_token_id=1, max_sequence_length=64, layer_norm_type="rms", layer_norm_with_affine=True,
    layer_norm_eps=1e-6, attention_layer_norm=True, norm_after=True, rope_theta=10_000.0,
    layer_types=olmo3_layer_types(), sliding_window=6, rope_yarn_factor=8.0, rope_yarn_original_max_position=4096,
)  # fmt: skip


def _dense_keep(steps, doc_ids, window, key_mask):
    pos = torch.arange(steps)
    keep = (pos[None, :] <= pos[:, None])[None, None]
    if window is not None:
        keep = keep & (pos[None, :] > pos[:, None] - window)
    keep = keep & (doc_ids[:, None, :, None] == doc_ids[:, None, None, :])
    return keep & (key_mask[:, None, None, :] | torch.eye(steps, dtype=torch.bool))


@pytest.mark.parametrize("window", [None, 5])
def test_blockwise_attention_equals_the_dense_mask_in_chunks(window):
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 40, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    k, v = (
        torch.randn(2, 2, 40, 8, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(2)
    )
    doc_ids = torch.tensor([[0] * 13 + [1] * 20 + [2] * 7, [0] * 40])
    key_mask = torch.ones(2, 40, dtype=torch.bool)
    key_mask[1, :3] = False  # left padding in the second row
    mask = layers.SparseMask(doc_ids, window, key_mask)
    ours = layers.blockwise_attention(q, k, v, mask, chunk=16)  # 3 chunks, the last one short
    keep = _dense_keep(40, doc_ids, window, key_mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, enable_gqa=True)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    grads = torch.autograd.grad(ours.square().sum(), (q, k, v))
    for got, want in zip(grads, torch.autograd.grad(ref.square().sum(), (q, k, v)), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_document_ids_start_a_document_after_each_eos():
    ids = torch.tensor([[5, 9, 3, 9, 9, 4]])
    assert layers.document_ids(ids, eos_token_id=9).tolist() == [[0, 0, 1, 1, 2, 3]]  # an EOS ends its own


def test_packed_documents_give_each_document_its_own_logits():
    model = Transformer(OLMO3).eval()
    init_weights(model, OLMO3, seed=3)
    gen = torch.Generator().manual_seed(1)
    docs = [torch.randint(2, 240, (n,), generator=gen) for n in (9, 17, 14)]
    for d in docs:
        d[-1] = OLMO3.eos_token_id
    packed = torch.cat(docs)[None]
    doc_ids = layers.document_ids(packed, OLMO3.eos_token_id)
    with torch.no_grad():
        together = model(packed, doc_ids=doc_ids)[0]
        alone = torch.cat([model(d[None])[0] for d in docs])
        unmasked = model(packed)[0]
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)
    assert (unmasked[9:] - alone[9:]).abs().max() > 1e-2  # without the mask the later documents differ


def _peak_bytes(fn) -> int:
    """Peak of the bytes allocated (minus freed) in order over every op fn runs, as the profiler saw them."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    current = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak


def test_masked_attention_memory_grows_linearly_with_the_sequence():
    """Forward and backward at 1,024 / 2,048 / 4,096 tokens, two documents: each doubling of the sequence
    doubles the blockwise peak; the same attention through a dense mask quadruples (the control)."""
    peaks = {"blockwise": [], "dense": []}
    for steps in (1024, 2048, 4096):
        q, k, v = (torch.randn(1, 2, steps, 16, requires_grad=True) for _ in range(3))
        doc_ids = (torch.arange(steps) >= steps // 3).long()[None]
        mask = layers.SparseMask(doc_ids)
        keep = _dense_keep(steps, doc_ids, None, torch.ones(1, steps, dtype=torch.bool))
        peaks["blockwise"].append(
            _peak_bytes(
                lambda q=q, k=k, v=v, m=mask: (
                    layers.blockwise_attention(q, k, v, m, chunk=256).sum().backward()
                )
            )
        )
        peaks["dense"].append(
            _peak_bytes(
                lambda q=q, k=k, v=v, m=keep: (
                    F.scaled_dot_product_attention(q, k, v, attn_mask=m).sum().backward()
                )
            )
        )
    growth = {name: [b / a for a, b in zip(p, p[1:])] for name, p in peaks.items()}
    assert all(1.5 < g < 2.5 for g in growth["blockwise"]), (peaks, growth)
    assert all(g > 3.5 for g in growth["dense"]), (peaks, growth)


def test_sliding_layers_use_no_dense_mask_in_training():
    masks = {}
    cfg = dataclasses.replace(OLMO3, rope_yarn_factor=None)
    model = Transformer(cfg)
    original = layers.attention

    def spy(q, k, v, bias=None):
        masks.setdefault(type(bias).__name__, 0)
        masks[type(bias).__name__] += 1
        return original(q, k, v, bias)

    layers.attention = spy
    try:
        model(torch.randint(0, 240, (2, 32)), labels=torch.randint(0, 240, (2, 32))).total.backward()
    finally:
        layers.attention = original
    assert masks == {"SparseMask": 3, "NoneType": 1}  # three sliding layers, one full (plain causal)


@pytest.mark.slow
def test_compiled_blocks_train_documents_and_windows_like_eager():
    """1,100 tokens: two query chunks, the unwindowed one rebuilt in backward, inside compiled blocks (one
    sliding layer and one full: each kind of block compiles once, 9 s here against 24 s for OLMo 3's four)."""
    from olmo_fn.parallel import apply_compile

    cfg = dataclasses.replace(
        OLMO3, max_sequence_length=1100, rope_yarn_factor=None, n_layers=2, layer_types=("sliding", "full")
    )
    ids = torch.randint(2, 240, (1, 1100), generator=torch.Generator().manual_seed(0))
    ids[0, 400] = ids[0, 900] = cfg.eos_token_id
    doc_ids = layers.document_ids(ids, cfg.eos_token_id)
    grads = []
    for compiled in (False, True):
        model = Transformer(cfg)
        init_weights(model, cfg, seed=2)
        if compiled:
            apply_compile(model)
        model(ids, labels=ids, doc_ids=doc_ids).total.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-4)
