"""--dry_run's per-device memory estimate against what training the tiny model really holds on the CPU:
parameters + gradients + AdamW state + the peak bytes of the tensors saved for backward (unique storages)."""

import dataclasses

import pytest
import torch

from olmo_fn.config import ParallelConfig
from olmo_fn.dryrun import dry_run_report, estimate_memory
from olmo_fn.loss import shift_labels
from olmo_fn.model import Transformer, init_weights
from olmo_fn.parallel import apply_ac
from tests.train.conftest import tiny_config


def measured_peak(cfg, checkpointing: bool) -> tuple[int, int]:
    """(parameters + gradients + optimizer state + saved-activation peak, saved-activation peak) in bytes."""
    model = Transformer(cfg.model)
    init_weights(model, cfg.model, 0)
    if checkpointing:
        apply_ac(model)
    optimizer = torch.optim.AdamW(model.parameters())
    live: dict[int, int] = {}
    peak = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        live[storage.data_ptr()] = storage.nbytes()
        peak[0] = max(peak[0], sum(live.values()))
        return t

    ids = torch.randint(
        2, cfg.model.vocab_size, (cfg.device_train_microbatch_size, cfg.model.max_sequence_length)
    )
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(ids, labels=shift_labels(ids))
    out.total.backward()
    optimizer.step()
    state = sum(t.nbytes for s in optimizer.state.values() for t in s.values() if t.dim() > 0)
    params = sum(p.nbytes for p in model.parameters())
    return 2 * params + state + peak[0], peak[0]


@pytest.fixture
def cfg(tmp_path):
    cfg = tiny_config(tmp_path)
    model = dataclasses.replace(
        cfg.model, d_model=64, n_layers=4, max_sequence_length=64, mlp_hidden_size=256
    )
    return dataclasses.replace(cfg, model=model, device_train_microbatch_size=4)


def test_estimate_is_within_a_quarter_of_the_measured_peak(cfg):
    measured, _ = measured_peak(cfg, checkpointing=False)
    assert estimate_memory(cfg, (1, 1, 1), checkpointing=False).total == pytest.approx(measured, rel=0.25)


def test_checkpointing_estimate_covers_what_the_forward_keeps_and_is_smaller(cfg):
    _, kept = measured_peak(cfg, checkpointing=True)
    with_ac = estimate_memory(cfg, (1, 1, 1), checkpointing=True)
    assert kept <= with_ac.activations < estimate_memory(cfg, (1, 1, 1), checkpointing=False).activations


def test_report_prints_the_mesh_and_shards_by_fsdp_and_tp(cfg):
    planned = dataclasses.replace(cfg, parallel=ParallelConfig(dp_replicate=2, dp_shard=4, tp=2))
    report = dry_run_report(planned)
    assert "mesh: dp_replicate 2 x dp_shard 4 x tp 2 = 16 device(s)" in report
    assert "no activation checkpointing" in report and "full activation checkpointing" in report
    one = estimate_memory(cfg, (1, 1, 1))
    sharded = estimate_memory(planned, (2, 4, 2))
    assert sharded.parameters == pytest.approx(one.parameters / 8, rel=0.01)
    assert sharded.optimizer == pytest.approx(one.optimizer / 8, rel=0.01)
