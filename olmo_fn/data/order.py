"""The global data order, exactly as the original OLMo computes and writes it.

The instance ids 0..N-1 (uint32) are shuffled with numpy's Generator(PCG64(seed + epoch)), then padded by
repetition (or, with drop_last, truncated) to a multiple of the world size. Batch b of a run is
global_indices[b*G:(b+1)*G]; rank r of W reads that batch's ids r, r+W, r+2W, ... (the original's
strided rank slice), so the global sequence does not depend on the number of ranks or workers.
"""

from __future__ import annotations

import math

import numpy as np

from olmo_fn.errors import ConfigError, DataError

GLOBAL_INDICES_FILE = "train_data/global_indices.npy"


def total_size(num_instances: int, world_size: int = 1, drop_last: bool = False) -> int:
    """Length of the global order: a multiple of world_size (the original's DistributedSampler rule)."""
    if world_size <= 0:
        raise ConfigError(f"world size must be positive, got {world_size}")
    if drop_last and num_instances % world_size:
        per_rank = math.ceil((num_instances - world_size) / world_size)
    else:
        per_rank = math.ceil(num_instances / world_size)
    return per_rank * world_size


def build_global_indices(
    num_instances: int,
    *,
    seed: int,
    epoch: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
    shuffle: bool = True,
) -> np.ndarray:
    """The epoch's global order of instance ids as uint32, byte-identical to the original's file."""
    if not 0 < num_instances < np.iinfo(np.uint32).max:
        raise DataError(f"the dataset has {num_instances} instances; the global order needs 1 to 2**32 - 2")
    indices = np.arange(num_instances, dtype=np.uint32)
    if shuffle:
        np.random.Generator(np.random.PCG64(seed=seed + epoch)).shuffle(indices)
    size = total_size(num_instances, world_size, drop_last)
    if size <= num_instances:
        return indices[:size]
    reps = math.ceil(size / num_instances)
    return np.tile(indices, reps)[:size]  # pad by repeating from the start, as the original does


def global_indices_path(save_folder: str) -> str:
    """Where a run keeps its global order: {save_folder}/train_data/global_indices.npy."""
    return f"{save_folder.rstrip('/')}/{GLOBAL_INDICES_FILE}"


def epoch_indices_path(save_folder: str, epoch: int) -> str:
    """Where a run keeps one epoch's order for good: {save_folder}/train_data/global_indices_epoch{E}.npy."""
    return f"{save_folder.rstrip('/')}/train_data/global_indices_epoch{epoch}.npy"


def write_global_indices(indices: np.ndarray, save_folder: str, epoch: int | None = None) -> str:
    """Write the order as raw uint32 (no header) to the save folder (atomically, with retries on object
    stores) as global_indices.npy, the current epoch's as the original names it, and with `epoch` also as
    that epoch's own file, which the next epoch leaves in place; return the global_indices.npy path."""
    from olmo_fn.checkpoint import storage

    data = np.ascontiguousarray(indices, dtype=np.uint32).tobytes()
    path = global_indices_path(save_folder)
    storage.write_bytes(path, data)
    if epoch is not None:
        storage.write_bytes(epoch_indices_path(save_folder, epoch), data)
    return path


def read_global_indices(path: str) -> np.ndarray:
    """Read a raw uint32 global order file (ours or the original's)."""
    from olmo_fn.checkpoint import storage

    if not storage.exists(path):
        raise DataError(f"{path}: global order file not found; a run writes it at start")
    data = storage.read_bytes(path)
    if len(data) % 4:
        raise DataError(
            f"{path}: size {len(data)} is not a multiple of 4; it is not a raw uint32 global order"
        )
    return np.frombuffer(data, dtype=np.uint32)


def batches_per_epoch(size: int, global_batch_size: int, drop_last: bool = False) -> int:
    """Global batches in an epoch of `size` ids: the last partial one counts unless drop_last."""
    return size // global_batch_size if drop_last else math.ceil(size / global_batch_size)


def batch_indices(
    global_indices: np.ndarray, batch: int, global_batch_size: int, rank: int = 0, world_size: int = 1
) -> np.ndarray:
    """Instance ids of global batch `batch` that rank `rank` of `world_size` reads."""
    if global_batch_size % world_size:
        raise ConfigError(
            f"global batch size {global_batch_size} is not divisible by world size {world_size}; "
            "pick a global batch size that is a multiple of the number of ranks"
        )
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} is outside [0, {world_size})")
    start = batch * global_batch_size
    return global_indices[start : start + global_batch_size][rank::world_size]
