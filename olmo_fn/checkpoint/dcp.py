"""Sharded checkpoints through torch.distributed.checkpoint (DCP): every rank writes its own shards.

    config.yaml                   the full training config (rank 0)
    model_and_optim/              DCP: `.metadata` + `__{rank}_{i}.distcp`; tensors only, keyed
                                  "model.{param}" and "optim.state.{param}.{name}"
    optim.json                    the optimizer's non-tensor state (param groups), identical on all ranks
    train/rank{R}.json|.safetensors  each rank's trainer state (RNG, loader position)
    manifest.json                 size + checksum of every file, written last by rank 0

DCP reshards on load, so a checkpoint saved by N ranks loads into M ranks (or one plain process).
"""

from __future__ import annotations

import json
import pickle
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import yaml
from torch import nn
from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter, _fsspec_filesystem
from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta, TensorStorageMetadata
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from olmo_fn.checkpoint import storage
from olmo_fn.checkpoint.native import (
    nest_optim_state,
    read_checked,
    read_manifest,
    read_trainer_state,
    split_optim,
    write_manifest,
    write_trainer_state,
)
from olmo_fn.checkpoint.tensors import decode_state
from olmo_fn.errors import CheckpointError

DCP_DIR = "model_and_optim"
_WRITE_THREADS = 4
_OPTIONS = StateDictOptions(flatten_optimizer_state_dict=True)
_METADATA_TYPES = {
    "torch.distributed.checkpoint.metadata": {
        "Metadata",
        "TensorStorageMetadata",
        "BytesStorageMetadata",
        "TensorProperties",
        "ChunkStorageMetadata",
        "MetadataIndex",
        "StorageMeta",
        "_MEM_FORMAT_ENCODING",
    },
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},
    "pathlib": {"PosixPath", "PurePosixPath"},
    "collections": {"OrderedDict"},
}


class _MetadataUnpickler(pickle.Unpickler):
    """DCP's .metadata is a pickle: admit only DCP's metadata classes, torch.Size and dtypes."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = name in _METADATA_TYPES.get(module, ())
        if module == "torch" and (name == "Size" or isinstance(getattr(torch, name, None), torch.dtype)):
            allowed = True
        if not allowed:
            raise CheckpointError(f"DCP .metadata refers to {module}.{name}, which is not allowed to load")
        return super().find_class(module, name)


class _SafeMetadata:
    """Mixin for DCP readers: read .metadata with the restricted unpickler instead of pickle.load."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        path = self._get_metadata_path(kwargs.get("rank"))  # type: ignore[attr-defined]
        with self.fs.create_stream(path, "rb") as f:  # type: ignore[attr-defined]
            metadata = _MetadataUnpickler(f).load()
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id  # type: ignore[attr-defined]
        return metadata


class SafeFileSystemReader(_SafeMetadata, FileSystemReader):
    """Local DCP reader with a restricted metadata unpickler."""


class _ReadaheadFileSystem(_fsspec_filesystem.FileSystem):
    """DCP's fsspec wrapper, opening files for reading with a plain read-ahead cache.

    gcsfs' default "adaptive" background prefetcher stalls on DCP's many small sequential reads.
    """

    @contextmanager
    def create_stream(self, path: Any, mode: str) -> Iterator[Any]:
        if "r" not in mode:
            with super().create_stream(path, mode) as stream:
                yield stream
            return
        with self.fs.open(str(path), mode, cache_type="readahead") as stream:
            yield stream


class SafeFsspecReader(_SafeMetadata, FsspecReader):
    """fsspec DCP reader (s3://, gs://, https://) with a restricted metadata unpickler."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        wrapper = _ReadaheadFileSystem()
        wrapper.fs = self.fs.fs
        self.fs = wrapper


def dcp_reader(url: str) -> FileSystemReader:
    """The safe DCP reader for a local path or URL."""
    return SafeFileSystemReader(storage.local_path(url)) if storage.is_local(url) else SafeFsspecReader(url)


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence DCP's "assuming the intent is to save in a single process" warning: that is the intent."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def rank_and_world() -> tuple[int, int]:
    """(rank, world size), (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if rank_and_world()[1] > 1:
        dist.barrier()


def all_gather(obj: Any) -> list[Any]:
    """Every rank's obj (in-memory only; nothing of it reaches disk as pickle)."""
    world = rank_and_world()[1]
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def _sharded_state(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> tuple[dict, dict]:
    """DCP tensors by flat key, and the optimizer's non-tensor entries."""
    if optimizer is None:
        return {f"model.{k}": v for k, v in get_model_state_dict(model, options=_OPTIONS).items()}, {}
    msd, osd = get_state_dict(model, optimizer, options=_OPTIONS)
    otensors, rest = split_optim(osd)
    tensors = {f"model.{k}": v for k, v in msd.items()} | {f"optim.{k}": v for k, v in otensors.items()}
    return tensors, rest


def write_sharded_dir(
    url: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    trainer_state: dict[str, Any] | None,
    config: dict[str, Any] | None,
    step: int,
) -> None:
    """Collective: every rank writes its shards and trainer state; rank 0 writes the manifest last."""
    rank, world = rank_and_world()
    tensors, rest = _sharded_state(model, optimizer)
    target = storage.join(url, DCP_DIR)
    with _quiet():
        if storage.is_local(url):  # several writer threads per rank: about twice the rate of one
            writer = FileSystemWriter(storage.local_path(target), thread_count=_WRITE_THREADS)
            dcp.save(tensors, storage_writer=writer, no_dist=world == 1)
        else:
            dcp.save(tensors, checkpoint_id=target, no_dist=world == 1)
    if trainer_state is not None:
        write_trainer_state(storage.join(url, "train"), f"rank{rank}", trainer_state)
    if rank == 0:
        if config is not None:
            storage.write_bytes(
                storage.join(url, "config.yaml"), yaml.safe_dump(config, sort_keys=False).encode()
            )
        if optimizer is not None:
            storage.write_bytes(storage.join(url, "optim.json"), json.dumps(rest).encode())
    barrier()
    files = _checksums(url, rank, world)
    if rank == 0:
        write_manifest(url, "sharded", step, files)
    barrier()


def _checksums(url: str, rank: int, world: int) -> dict[str, dict[str, Any]]:
    """Size + checksum of every file below url; the reading is spread over the ranks."""
    sizes = storage.list_files(url)
    mine = {}
    for i, name in enumerate(sorted(sizes)):
        if i % world == rank:
            data = storage.read_bytes(storage.join(url, name))
            mine[name] = storage.entry(data)
    merged: dict[str, dict[str, Any]] = {}
    for part in all_gather(mine):
        merged.update(part)
    return dict(sorted(merged.items()))


def verify_sharded_dir(url: str, manifest: dict[str, Any]) -> None:
    """Check every file against the manifest (spread over ranks); CheckpointError on all ranks if one fails."""
    rank, world = rank_and_world()
    error = ""
    for i, (name, entry) in enumerate(sorted(manifest["files"].items())):
        if i % world == rank and not error:
            try:
                storage.check_file(
                    storage.join(url, name), storage.read_bytes(storage.join(url, name)), entry
                )
            except CheckpointError as e:
                error = str(e)
    errors = [e for e in all_gather(error) if e]
    if errors:
        raise CheckpointError(errors[0])


def load_sharded_dir(
    url: str, model: nn.Module, optimizer: torch.optim.Optimizer | None, verify: bool = True
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Load a sharded folder into model (and optimizer) at any world size; returns (trainer state, config)."""
    manifest = read_manifest(url)
    if verify:
        verify_sharded_dir(url, manifest)
    rank, world = rank_and_world()
    tensors, current_rest = _sharded_state(model, optimizer)
    try:
        with _quiet():
            dcp.load(tensors, storage_reader=dcp_reader(storage.join(url, DCP_DIR)), no_dist=world == 1)
    except Exception as e:  # noqa: BLE001 - DCP raises CheckpointException, RuntimeError, KeyError ...
        raise CheckpointError(f"{url}: the sharded checkpoint does not fit this model/optimizer: {e}") from e
    msd = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    if optimizer is None:
        set_model_state_dict(model, msd)
    else:
        saved = json.loads(read_checked(url, "optim.json", manifest))
        rest = {k: decode_state(saved.get(k, v), {}) for k, v in current_rest.items()}
        osd = {k[len("optim.") :]: v for k, v in tensors.items() if k.startswith("optim.")} | rest
        nested = nest_optim_state(osd, model, optimizer)
        set_state_dict(model, optimizer, model_state_dict=msd, optim_state_dict=nested)
    return _trainer_state_of_rank(url, manifest, rank), _config(url, manifest)


def _trainer_state_of_rank(url: str, manifest: dict[str, Any], rank: int) -> dict[str, Any] | None:
    """This rank's trainer state, or rank 0's when the checkpoint was saved by fewer ranks."""
    for r in (rank, 0):
        if f"train/rank{r}.json" in manifest["files"]:
            return read_trainer_state(
                storage.join(url, "train"), f"rank{r}", _sub_manifest(manifest, "train/")
            )
    return None


def _sub_manifest(manifest: dict[str, Any], prefix: str) -> dict[str, Any]:
    files = {k[len(prefix) :]: v for k, v in manifest["files"].items() if k.startswith(prefix)}
    return {**manifest, "files": files}


def _config(url: str, manifest: dict[str, Any]) -> dict[str, Any] | None:
    if "config.yaml" not in manifest["files"]:
        return None
    return yaml.safe_load(read_checked(url, "config.yaml", manifest))


def read_sharded_full(
    url: str, with_optim: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Full model tensors and flat optimizer state of a sharded folder, without a model (for unsharding)."""
    manifest = read_manifest(url)
    verify_sharded_dir(url, manifest)
    metadata = dcp_reader(storage.join(url, DCP_DIR)).read_metadata()
    wanted = ("model.", "optim.") if with_optim else ("model.",)
    tensors = {
        k: torch.empty(m.size, dtype=m.properties.dtype)
        for k, m in metadata.state_dict_metadata.items()
        if isinstance(m, TensorStorageMetadata) and k.startswith(wanted)
    }
    with _quiet():
        dcp.load(tensors, storage_reader=dcp_reader(storage.join(url, DCP_DIR)), no_dist=True)
    model = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    if not with_optim or "optim.json" not in manifest["files"]:
        return model, None
    rest = {k: decode_state(v, {}) for k, v in json.loads(read_checked(url, "optim.json", manifest)).items()}
    return model, {k[len("optim.") :]: v for k, v in tensors.items() if k.startswith("optim.")} | rest


def trainer_state_and_config(url: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Rank 0's trainer state and the config of a sharded folder."""
    manifest = read_manifest(url)
    return _trainer_state_of_rank(url, manifest, 0), _config(url, manifest)
