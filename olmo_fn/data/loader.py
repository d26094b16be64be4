"""The training loader: torchdata's StatefulDataLoader over a token dataset, in the global order.

The batch sampler's state is (epoch, global position): the number of instances of the epoch's global order
that all ranks together have consumed. That state does not depend on the rank, the world size or the number
of workers, so a run resumes exactly, also on another number of ranks with the same global batch size.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from torchdata.stateful_dataloader import StatefulDataLoader

from olmo_fn.config import DataConfig
from olmo_fn.data.memmap import TokenDataset
from olmo_fn.data.order import batch_indices, batches_per_epoch, build_global_indices, total_size
from olmo_fn.errors import ConfigError

STATE_FORMAT = "olmo_fn.data.loader/1"


class GlobalOrderBatchSampler(Sampler[list[int]]):
    """Yields this rank's share of global batch b = global_indices[b*G:(b+1)*G]; iterating again starts the next epoch."""

    def __init__(
        self,
        num_instances: int,
        global_batch_size: int,
        *,
        seed: int,
        epoch: int = 0,
        start_position: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ):
        if global_batch_size <= 0 or global_batch_size % world_size:
            raise ConfigError(
                f"global batch size {global_batch_size} must be a positive multiple of the world size {world_size}"
            )
        self.num_instances = num_instances
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.size = total_size(num_instances, world_size, drop_last)
        self._batches = batches_per_epoch(self.size, global_batch_size, drop_last)
        self._order: tuple[int, np.ndarray] | None = None
        self.load_state_dict({"epoch": epoch, "global_position": start_position})

    @property
    def batches_per_epoch(self) -> int:
        """Global batches in an epoch (this rank reads its share of each)."""
        return self._batches

    def __len__(self) -> int:
        return self.batches_per_epoch

    def global_indices(self) -> np.ndarray:
        """The current epoch's global order (built once per epoch)."""
        if self._order is None or self._order[0] != self.epoch:
            order = build_global_indices(
                self.num_instances,
                seed=self.seed,
                epoch=self.epoch,
                world_size=self.world_size,
                drop_last=self.drop_last,
            )
            self._order = (self.epoch, order)
        return self._order[1]

    def __iter__(self) -> Iterator[list[int]]:
        if self.batch >= self._batches:  # the previous epoch is used up: reshuffle with seed + epoch
            self.epoch, self.batch = self.epoch + 1, 0
        return self

    def __next__(self) -> list[int]:
        batch = self.batch
        if batch >= self._batches:
            raise StopIteration
        ids = batch_indices(self.global_indices(), batch, self.global_batch_size, self.rank, self.world_size)
        self.batch = batch + 1
        return ids.tolist()

    @property
    def global_position(self) -> int:
        """Instances of this epoch's global order consumed by all ranks together."""
        return min(self.batch * self.global_batch_size, self.size)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "global_position": self.global_position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        position = int(state["global_position"])
        if position < 0 or (position % self.global_batch_size and position != self.size):
            raise ConfigError(
                f"data position {position} is not a multiple of the global batch size {self.global_batch_size}; "
                "resume with the global batch size the run was saved with"
            )
        self.epoch = int(state["epoch"])
        self.batch = -(-position // self.global_batch_size)


def _pad(rows: list[torch.Tensor], length: int, value: Any, left: bool) -> torch.Tensor:
    """Stack 1-d tensors, padding each to `length` on the left or right."""
    if all(len(r) == length for r in rows):
        return torch.stack(rows)
    out = torch.full((len(rows), length), value, dtype=rows[0].dtype)
    for i, r in enumerate(rows):
        if left:
            out[i, length - len(r) :] = r
        else:
            out[i, : len(r)] = r
    return out


def collate_instances(
    items: list[dict[str, Any]], *, pad_token_id: int, pad_direction: str = "right"
) -> dict[str, Any]:
    """Batch dataset items: input_ids [B,T], label_mask [B,T], instance_mask [B], index [B], metadata, ..."""
    left = pad_direction == "left"
    length = max(len(it["input_ids"]) for it in items)
    ids = [it["input_ids"] for it in items]
    masks = [it.get("label_mask", torch.ones(len(it["input_ids"]), dtype=torch.bool)) for it in items]
    batch: dict[str, Any] = {
        "input_ids": _pad(ids, length, pad_token_id, left),
        "label_mask": _pad(masks, length, False, left),  # padding is never a label
        "instance_mask": torch.tensor([bool(it.get("instance_mask", True)) for it in items]),
        "index": torch.tensor([int(it["index"]) for it in items], dtype=torch.long),
        "metadata": [it.get("metadata", {}) for it in items],
    }
    if "attention_mask" in items[0]:
        batch["attention_mask"] = _pad([it["attention_mask"] for it in items], length, False, left)
    return batch


class BatchedTokens(Dataset):
    """A TokenDataset indexed by a whole batch of instance ids at once (fast bulk reads)."""

    def __init__(self, dataset: TokenDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: list[int]) -> dict[str, Any]:
        return self.dataset.read_batch(indices)


def _keep_numpy(batch: dict[str, Any]) -> dict[str, Any]:
    return batch  # workers send numpy arrays; tensors are made in the training process (cheaper than shm)


def batch_to_torch(batch: dict[str, Any], pin_memory: bool = False) -> dict[str, Any]:
    """A read_batch dict as tensors: input_ids int64, masks bool, index int64 (lists stay lists)."""
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value.astype(np.int64) if key == "input_ids" else value)
            if pin_memory:
                value = value.pin_memory()
        out[key] = value
    return out


class TrainLoader(StatefulDataLoader):
    """StatefulDataLoader whose batches become tensors in the training process."""

    def __init__(self, *args: Any, pin_batches: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.pin_batches = pin_batches

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return map(partial(batch_to_torch, pin_memory=self.pin_batches), super().__iter__())


def build_train_loader(
    dataset: TokenDataset,
    cfg: DataConfig,
    *,
    global_batch_size: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    epoch: int = 0,
    start_position: int = 0,
    worker_init_fn=None,
) -> TrainLoader:
    """A loader yielding this rank's slice of each global batch, from (epoch, start_position) of the order;
    `worker_init_fn` runs in each worker process (num_workers > 0)."""
    if len(dataset) == 0:
        raise ConfigError(
            "the training data holds no instance: the token files are shorter than one sequence"
        )
    sampler = GlobalOrderBatchSampler(
        len(dataset),
        global_batch_size,
        seed=seed,
        epoch=epoch,
        start_position=start_position,
        rank=rank,
        world_size=world_size,
        drop_last=cfg.drop_last,
    )
    workers = cfg.num_workers
    return TrainLoader(
        BatchedTokens(dataset),
        sampler=sampler,  # yields lists of ids: each is read as one batch (batch_size=None)
        batch_size=None,
        num_workers=workers,
        collate_fn=_keep_numpy,
        pin_batches=cfg.pin_memory and torch.cuda.is_available(),
        prefetch_factor=cfg.prefetch_factor if workers > 0 else None,
        persistent_workers=cfg.persistent_workers and workers > 0,
        timeout=cfg.timeout,
        worker_init_fn=worker_init_fn if workers > 0 else None,
        snapshot_every_n_steps=1,  # the sampler state is two ints: snapshot every batch, resume exactly
    )


def order_sampler(loader: StatefulDataLoader) -> GlobalOrderBatchSampler:
    """The loader's GlobalOrderBatchSampler (its epoch, position and global order)."""
    sampler = loader.sampler
    if not isinstance(sampler, GlobalOrderBatchSampler):
        raise TypeError("this loader was not built by build_train_loader")
    return sampler


def _position_in(state: dict[str, Any]) -> dict[str, int]:
    """The sampler state (epoch, global position) of what a StatefulDataLoader state has yielded."""
    if "_snapshot" in state:  # workers: the main-process snapshot at the last yielded batch
        main = state["_snapshot"]["_main_snapshot"]
        sampler_state, steps = main["_index_sampler_state"], state["_steps_since_snapshot"]
    else:
        sampler_state, steps = state["_index_sampler_state"], 0
    if steps:
        raise RuntimeError("a loader state taken between snapshots; build_train_loader snapshots every batch")
    return dict(sampler_state)


def loader_state_dict(loader: StatefulDataLoader) -> dict[str, Any]:
    """The loader's position: epoch and global position (portable), plus torchdata's own state (exact)."""
    sampler = order_sampler(loader)
    inner = loader.state_dict()
    return {
        "format": STATE_FORMAT,
        **_position_in(inner),
        "global_batch_size": sampler.global_batch_size,
        "world_size": sampler.world_size,
        "num_workers": loader.num_workers,
        "torchdata": inner,
    }


def load_loader_state_dict(loader: StatefulDataLoader, state: dict[str, Any]) -> None:
    """Resume a loader from loader_state_dict: exactly, also with another world size or number of workers."""
    sampler = order_sampler(loader)
    if state.get("global_batch_size") != sampler.global_batch_size:
        raise ConfigError(
            f"the data state was saved with global batch size {state.get('global_batch_size')}, this run uses "
            f"{sampler.global_batch_size}; resume with the same global batch size"
        )
    sampler.load_state_dict({"epoch": state["epoch"], "global_position": state["global_position"]})
    if state["world_size"] == sampler.world_size and state["num_workers"] == loader.num_workers:
        loader.load_state_dict(state["torchdata"])  # torchdata's own state too (the same position)
