"""Data: OLMo token files, the global data order, the resumable loader, preparation and the default corpus."""

from olmo_fn.data.corpus import CorpusPaths, default_corpus
from olmo_fn.data.loader import (
    batch_to_torch,
    build_train_loader,
    collate_instances,
    load_loader_state_dict,
    loader_state_dict,
    order_sampler,
)
from olmo_fn.data.memmap import TokenDataset, build_token_dataset
from olmo_fn.data.order import (
    batch_indices,
    build_global_indices,
    global_indices_path,
    read_global_indices,
    write_global_indices,
)

__all__ = [
    "CorpusPaths",
    "TokenDataset",
    "batch_indices",
    "batch_to_torch",
    "build_global_indices",
    "build_token_dataset",
    "build_train_loader",
    "collate_instances",
    "default_corpus",
    "global_indices_path",
    "load_loader_state_dict",
    "loader_state_dict",
    "order_sampler",
    "read_global_indices",
    "write_global_indices",
]
