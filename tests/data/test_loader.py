"""The loader yields the global order, resumes exactly (0/1/2 workers, other world sizes) and reshuffles per epoch."""

import json

import numpy as np
import pytest
import torch

from olmo_fn.config import DataConfig
from olmo_fn.data.loader import (
    build_train_loader,
    collate_instances,
    load_loader_state_dict,
    loader_state_dict,
    order_sampler,
)
from olmo_fn.data.memmap import build_token_dataset
from olmo_fn.data.order import build_global_indices
from olmo_fn.errors import ConfigError

pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated")
G = 4
TOTAL = 20  # batches read in each scenario: 9 per epoch (38 instances, drop_last), so into epoch 2


def make_loader(original_data, num_workers=0, rank=0, world_size=1, **kw):
    paths = [str(original_data / "part-0.npy"), str(original_data / "part-1.npy")]
    cfg = DataConfig(paths=paths, num_workers=num_workers, drop_last=True, **kw)
    dataset = build_token_dataset(cfg, seq_len=64, vocab_size=250)
    return build_train_loader(dataset, cfg, global_batch_size=G, seed=1, rank=rank, world_size=world_size)


def read(loader, n, stop_at=None):
    """Up to n batches' instance ids over as many epochs as needed; with stop_at, also the state after it."""
    out = []
    while len(out) < n:
        for batch in loader:
            out.append(batch["index"].tolist())
            if len(out) == stop_at:
                return out, loader_state_dict(loader)
            if len(out) == n:
                break
    return out, None


def expected_batches(original_data, n):
    epochs = [
        np.fromfile(original_data / f"global_indices_seed1_ep{e}_G4.npy", dtype=np.uint32) for e in (0, 1)
    ]
    epochs.append(build_global_indices(38, seed=1, epoch=2, drop_last=True))
    batches = [e[i * G : (i + 1) * G].tolist() for e in epochs for i in range(len(e) // G)]
    return batches[:n]


def test_batches_follow_the_original_order_across_epochs(original_data):
    loader = make_loader(original_data)
    batches, _ = read(loader, TOTAL)
    assert batches == expected_batches(original_data, TOTAL)
    assert order_sampler(loader).epoch == 2


def test_batch_contents_are_the_instances_tokens(original_data):
    batch = next(iter(make_loader(original_data)))
    raw0 = np.fromfile(original_data / "part-0.npy", dtype=np.uint16)
    assert batch["input_ids"].shape == (4, 64) and batch["input_ids"].dtype == torch.int64
    assert batch["index"].tolist() == [26, 9, 22, 16]
    assert batch["input_ids"][1].tolist() == raw0[9 * 64 : 10 * 64].tolist()
    assert batch["label_mask"].all() and batch["instance_mask"].all()
    assert batch["metadata"][1] == {"path": str(original_data / "part-0.npy")}


@pytest.mark.parametrize(
    "num_workers,stop,epoch,position",
    [(0, 1, 0, 4), (0, 5, 0, 20), (0, 9, 0, 36), (0, 12, 1, 12), (1, 5, 0, 20), (2, 3, 0, 12), (2, 9, 0, 36)]
    + [(2, 11, 1, 8)],
)
def test_resume_is_exact(original_data, num_workers, stop, epoch, position):
    expected = expected_batches(original_data, TOTAL)
    head, state = read(make_loader(original_data, num_workers), TOTAL, stop_at=stop)
    assert head == expected[:stop]
    state = json.loads(json.dumps(state))  # the state is plain JSON data (no pickle needed)
    assert (state["epoch"], state["global_position"]) == (epoch, position)
    resumed = make_loader(original_data, num_workers)
    load_loader_state_dict(resumed, state)
    tail, _ = read(resumed, TOTAL - stop)
    assert head + tail == expected


def test_start_from_an_epoch_and_position_and_save_before_reading(original_data):
    cfg = DataConfig(
        paths=[str(original_data / "part-0.npy"), str(original_data / "part-1.npy")], drop_last=True
    )
    dataset = build_token_dataset(cfg, seq_len=64)
    loader = build_train_loader(dataset, cfg, global_batch_size=G, seed=1, epoch=1, start_position=8)
    state = loader_state_dict(loader)  # e.g. a checkpoint before the first step
    assert (state["epoch"], state["global_position"]) == (1, 8)
    fresh = make_loader(original_data)
    load_loader_state_dict(fresh, state)
    assert order_sampler(fresh).epoch == 1  # known before the first batch (to write that epoch's order)
    assert read(fresh, 2)[0] == read(loader, 2)[0] == expected_batches(original_data, 13)[11:13]
    with pytest.raises(ConfigError, match="position 6 is not a multiple of the global batch size 4"):
        build_train_loader(dataset, cfg, global_batch_size=G, seed=1, start_position=6)


def test_resume_after_the_epoch_ended(original_data):
    loader = make_loader(original_data)
    first = [b["index"].tolist() for b in loader]  # a whole epoch, StopIteration included
    state = loader_state_dict(loader)
    resumed = make_loader(original_data)
    load_loader_state_dict(resumed, state)
    second, _ = read(resumed, 9)
    assert first + second == expected_batches(original_data, 18)


def test_persistent_workers_reshuffle_each_epoch(original_data):
    loader = make_loader(original_data, num_workers=2, persistent_workers=True)
    batches, _ = read(loader, TOTAL)
    assert batches == expected_batches(original_data, TOTAL)


def interleave(rank_batches):
    """The global batches of per-rank batches (rank r holds ids r, r+W, ... of each global batch)."""
    out = []
    for per_rank in zip(*rank_batches, strict=True):
        merged = [None] * sum(len(b) for b in per_rank)
        for r, b in enumerate(per_rank):
            merged[r :: len(per_rank)] = b
        out.append(merged)
    return out


def test_resume_on_two_ranks_continues_the_global_sequence(original_data):
    expected = expected_batches(original_data, TOTAL)
    head, state = read(make_loader(original_data), TOTAL, stop_at=4)
    ranks = []
    for rank in range(2):
        loader = make_loader(original_data, num_workers=rank, rank=rank, world_size=2)  # 0 and 1 workers
        load_loader_state_dict(loader, state)
        ranks.append(read(loader, TOTAL - 4)[0])
    assert all(len(b) == 2 for r in ranks for b in r)
    assert head + interleave(ranks) == expected


def test_resume_from_two_ranks_on_one(original_data):
    states = [read(make_loader(original_data, rank=r, world_size=2), TOTAL, stop_at=6)[1] for r in range(2)]
    assert states[0]["global_position"] == states[1]["global_position"] == 24
    loader = make_loader(original_data, num_workers=2)
    load_loader_state_dict(loader, states[1])
    assert read(loader, TOTAL - 6)[0] == expected_batches(original_data, TOTAL)[6:]


def test_resume_needs_the_same_global_batch_size(original_data):
    _, state = read(make_loader(original_data), TOTAL, stop_at=2)
    state["global_batch_size"] = 8
    with pytest.raises(ConfigError, match="global batch size 8"):
        load_loader_state_dict(make_loader(original_data), state)


def test_collate_pads_and_never_labels_padding():
    items = [
        {"input_ids": torch.tensor([5, 6, 7]), "index": 3, "metadata": {"path": "a"}, "instance_mask": False},
        {"input_ids": torch.tensor([8]), "index": 9, "label_mask": torch.tensor([True]), "metadata": {}},
    ]
    right = collate_instances(items, pad_token_id=1)
    assert right["input_ids"].tolist() == [[5, 6, 7], [8, 1, 1]]
    assert right["label_mask"].tolist() == [[True] * 3, [True, False, False]]
    assert right["instance_mask"].tolist() == [False, True]
    assert right["index"].tolist() == [3, 9] and right["metadata"] == [{"path": "a"}, {}]
    left = collate_instances(items, pad_token_id=1, pad_direction="left")
    assert left["input_ids"].tolist() == [[5, 6, 7], [1, 1, 8]]
    assert left["label_mask"].tolist() == [[True] * 3, [False, False, True]]
