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

import io
import json
import os
import pickle
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint import filesystem as _filesystem
from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader, FsspecWriter
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta, TensorStorageMetadata
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_state_dict

from olmo_fn.checkpoint import storage
from olmo_fn.checkpoint.collective import (
    all_gather,
    on_every_rank,
    rank_and_world,
    recorded_thread_errors,
    write_failure,
)
from olmo_fn.checkpoint.dcp_fs import RemoteFileSystem
from olmo_fn.checkpoint.manifest import (
    check_files,
    read_checked,
    read_config,
    read_manifest,
    read_trainer_state,
    split_optim,
    write_bytes_entry,
    write_config_yaml,
    write_manifest,
    write_trainer_state,
)
from olmo_fn.checkpoint.source import apply_hyperparameters, state_targets
from olmo_fn.checkpoint.tensors import decode_state, strict_json
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
            try:
                metadata = _MetadataUnpickler(io.BytesIO(f.read())).load()  # one read, not one per field
            except CheckpointError as e:
                raise CheckpointError(f"{path}: refused to load: {e}") from None
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id  # type: ignore[attr-defined]
        return metadata


class SafeFileSystemReader(_SafeMetadata, FileSystemReader):
    """Local DCP reader with a restricted metadata unpickler."""


class SafeFsspecReader(_SafeMetadata, FsspecReader):
    """fsspec DCP reader (s3://, gs://, https://) with a restricted metadata unpickler.

    Each stored item is fetched with one range request of exactly its length and parsed in memory: DCP's
    own file views let torch.load seek around inside an item, which behind a read-ahead cache fetched
    several times the checkpoint's bytes (and gcsfs' default prefetcher stalls on it).
    """

    def __init__(self, path: str) -> None:
        super().__init__(path)
        wrapper = RemoteFileSystem()
        wrapper.fs = self.fs.fs
        self.fs = wrapper

    def _slice_file(self, file: Any, sinfo: Any) -> io.BytesIO:
        file.seek(sinfo.offset)
        return io.BytesIO(file.read(sinfo.length))


def dcp_reader(url: str) -> FileSystemReader:
    """The safe DCP reader for a local path or URL."""
    return SafeFileSystemReader(storage.local_path(url)) if storage.is_local(url) else SafeFsspecReader(url)


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence DCP's "assuming the intent is to save in a single process" warning: that is the intent."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def _sharded_state(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> tuple[dict, dict]:
    """DCP tensors by flat key, and the optimizer's non-tensor entries."""
    if optimizer is None:
        return {f"model.{k}": v for k, v in get_model_state_dict(model, options=_OPTIONS).items()}, {}
    msd, osd = get_state_dict(model, optimizer, options=_OPTIONS)
    otensors, rest = split_optim(osd)
    tensors = {f"model.{k}": v for k, v in msd.items()} | {f"optim.{k}": v for k, v in otensors.items()}
    return tensors, rest


class _HashingStream(io.RawIOBase):
    """A write stream that hashes what passes through it (DCP writes each file front to back)."""

    def __init__(self, raw: Any):
        super().__init__()
        self.raw, self.size, self.digest = raw, 0, storage.hasher()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.digest.update(view)
        self.size += view.nbytes
        return self.raw.write(view)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.raw.flush()

    def fileno(self) -> int:
        return self.raw.fileno()

    def close(self) -> None:  # the raw stream is closed by its owner
        self.flush()
        super().close()


class _HashingFS:
    """Mixin for DCP's filesystems: every file written is hashed on the way; renames move the record."""

    def __init__(self) -> None:
        super().__init__()
        self._records: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.failures: list[BaseException] = []  # also those of DCP's writer threads, which it only prints

    @contextmanager
    def create_stream(self, path: Any, mode: str) -> Iterator[Any]:
        with super().create_stream(path, mode) as raw:  # type: ignore[misc]
            if "w" not in mode:
                yield raw
                return
            stream = _HashingStream(raw)
            try:
                yield stream
            except BaseException as e:
                with self._lock:
                    self.failures.append(e)
                raise
            with self._lock:
                self._records[os.fspath(path)] = {"size": stream.size, "xxh3": stream.digest.hexdigest()}

    def rename(self, path: Any, new_path: Any) -> None:
        super().rename(path, new_path)  # type: ignore[misc]
        with self._lock:
            if os.fspath(path) in self._records:
                self._records[os.fspath(new_path)] = self._records.pop(os.fspath(path))

    def entries_below(self, root: str) -> dict[str, dict[str, Any]]:
        """Manifest entries of the files written, relative to root."""
        root = root.rstrip("/") + "/"
        return {k[len(root) :]: v for k, v in self._records.items() if k.startswith(root)}


class _HashingLocalFS(_HashingFS, _filesystem.FileSystem):
    pass


class _HashingFsspecFS(_HashingFS, RemoteFileSystem):
    pass


def _hashing_writer(target: str) -> tuple[Any, str]:
    """A DCP writer for a local path or URL that hashes while writing, and the root its records use."""
    if storage.is_local(target):  # several writer threads per rank: about twice the rate of one
        writer = FileSystemWriter(storage.local_path(target), thread_count=_WRITE_THREADS)
        fs = _HashingLocalFS()
    else:
        writer = FsspecWriter(target)
        fs = _HashingFsspecFS()
        fs.fs = writer.fs.fs
    writer.fs = fs
    return writer, os.fspath(writer.path)


def write_sharded_dir(
    url: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    trainer_state: dict[str, Any] | None,
    config: dict[str, Any] | None,
    step: int,
) -> None:
    """Collective: every rank writes its shards and trainer state, hashing as it writes; rank 0 writes the
    manifest last from every rank's entries (nothing is read back)."""
    rank, world = rank_and_world()
    tensors, rest = _sharded_state(model, optimizer)
    writer, root = _hashing_writer(storage.join(url, DCP_DIR))

    def write_shards() -> None:
        try:
            with _quiet(), recorded_thread_errors(writer.fs.failures):  # collective
                dcp.save(tensors, storage_writer=writer, no_dist=world == 1)
        except CheckpointException:
            if not writer.fs.failures:  # another rank's write failed
                raise
        if writer.fs.failures:  # this rank's write failed (in a writer thread too): a file is cut short
            raise write_failure(writer.fs.failures, os.fspath(writer.path))

    def write_rest() -> dict[str, dict[str, Any]]:
        files = {f"{DCP_DIR}/{k}": v for k, v in writer.fs.entries_below(root).items()}
        if trainer_state is not None:
            written = write_trainer_state(storage.join(url, "train"), f"rank{rank}", trainer_state)
            files |= {f"train/{k}": v for k, v in written.items()}
        if rank == 0:
            if config is not None:
                files["config.yaml"] = write_config_yaml(url, config)
            if optimizer is not None:
                files["optim.json"] = write_bytes_entry(url, "optim.json", json.dumps(rest).encode())
        return files

    on_every_rank(write_shards)
    merged: dict[str, dict[str, Any]] = {}
    for part in all_gather(on_every_rank(write_rest)):
        merged |= part
    on_every_rank(lambda: rank == 0 and write_manifest(url, "sharded", step, dict(sorted(merged.items()))))


def verify_sharded_dir(url: str, manifest: dict[str, Any]) -> None:
    """Check every file's checksum (reading spread over ranks); CheckpointError on all ranks if one fails."""
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
    url: str, model: nn.Module, optimizer: torch.optim.Optimizer | None, verify: bool = False
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Load a sharded folder in place into model (and optimizer) at any world size: each rank reads only
    the slices it owns. Sizes are always checked; `verify` also reads every file once for its checksum.
    Returns (this rank's trainer state, config)."""
    manifest = read_manifest(url)
    check_files(url, manifest)
    if verify:
        verify_sharded_dir(url, manifest)
    rank, world = rank_and_world()
    with_optim = optimizer is not None and "optim.json" in manifest["files"]
    targets = state_targets(model, optimizer if with_optim else None)
    dcp_reader(storage.join(url, DCP_DIR)).read_metadata()  # a refused .metadata is its own error, not DCP's
    try:
        with _quiet():
            dcp.load(targets, storage_reader=dcp_reader(storage.join(url, DCP_DIR)), no_dist=world == 1)
    except Exception as e:  # noqa: BLE001 - DCP raises CheckpointException, RuntimeError, KeyError ...
        raise CheckpointError(f"{url}: the sharded checkpoint does not fit this model/optimizer: {e}") from e
    if with_optim:
        saved = _optim_json(url, manifest)
        apply_hyperparameters(optimizer, model, {k: decode_state(v, {}) for k, v in saved.items()})
    return _trainer_state_of_rank(url, manifest, rank), read_config(url, manifest)


def _optim_json(url: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """optim.json: the optimizer's non-tensor state, a JSON object (one clear error otherwise)."""
    saved = strict_json(read_checked(url, "optim.json", manifest), storage.join(url, "optim.json"))
    if not isinstance(saved, dict):
        raise CheckpointError(f"{url}/optim.json: not the optimizer state olmo_fn writes (a JSON object)")
    return saved


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


def read_sharded_full(
    url: str, with_optim: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Full model tensors and flat optimizer state of a sharded folder, without a model (for unsharding)."""
    manifest = read_manifest(url)
    check_files(url, manifest)
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
    rest = {k: decode_state(v, {}) for k, v in _optim_json(url, manifest).items()}
    return model, {k[len("optim.") :]: v for k, v in tensors.items() if k.startswith("optim.")} | rest


def trainer_state_and_config(url: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Rank 0's trainer state and the config of a sharded folder."""
    manifest = read_manifest(url)
    return _trainer_state_of_rank(url, manifest, 0), read_config(url, manifest)
