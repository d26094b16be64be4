"""Full-state checkpoints as streams of named tensors, and one function that loads a stream on any mesh.

Every full-state format (olmo_fn unsharded, original OLMo, Hugging Face) is a reader that offers a Source:
the names, shapes and dtypes of its tensors ("model.{param}", "optim.state.{param}.{key}"), a generator
that reads them one at a time in that order, and the small non-tensor rest (optimizer hyperparameters,
trainer state, config).

`apply_source` loads a Source into a plain, FSDP2, TP or HSDP model and its optimizer. One rank per node
(local rank 0) opens the checkpoint and reads it tensor by tensor; it sends every rank of its node exactly
that rank's slice of each tensor (point to point; the slices come from each rank's DTensor layout), which
lands straight in the rank's parameter or optimizer shard. So a node holds the checkpoint's bytes once in
all (as its ranks' shards) plus one tensor in flight on the reader, whatever the checkpoint's size; storage
is read once per node, and each byte crosses to one rank (a replicated tensor to each of its holders).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
)
from torch.distributed.tensor import DTensor
from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

from olmo_fn.errors import CheckpointError


@dataclass
class Entry:
    """One tensor of a Source: its name and what it will be."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype


@dataclass
class Source:
    """What a full-state reader offers: tensor entries and a generator reading them in that order.

    A yielded tensor is valid until the next one is asked for (readers reuse their buffer). `tensors()` raises CheckpointError on a corrupt or truncated file (a checksum is checked once the last
    tensor of a file is read); `rest` holds the non-tensor optimizer state ("param_groups.{param}.{key}").
    """

    entries: list[Entry]
    tensors: Callable[[], Iterator[torch.Tensor]] | None
    rest: dict[str, Any] = field(default_factory=dict)
    trainer_state: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    kind: str = ""


@dataclass
class Lazy:
    """A tensor of a file, known by shape and dtype until `load()` reads it; `release()` is called once it
    has been used (a memory-mapped tensor gives its pages back)."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    load: Callable[[], torch.Tensor]
    release: Callable[[], None] = lambda: None

    @staticmethod
    def of(tensor: torch.Tensor) -> Lazy:
        return Lazy(tuple(tensor.shape), tensor.dtype, lambda: tensor)

    @staticmethod
    def mapped(tensor: torch.Tensor) -> Lazy:
        """A tensor of a file that torch memory-mapped (a .pt or .bin loaded with mmap), its pages dropped after use."""
        return Lazy(tuple(tensor.shape), tensor.dtype, lambda: tensor, lambda: drop_pages(tensor))


def drop_pages(tensor: torch.Tensor) -> None:
    """Tell the kernel a read-only memory-mapped tensor's pages are not needed (Linux madvise DONTNEED):
    they leave this process's resident memory and would be read from the file again if touched, so a
    reader streaming through a mapped file holds one tensor of it, not the whole file."""
    if not tensor.numel() or not sys.platform.startswith("linux"):
        return
    page = mmap.PAGESIZE
    start = tensor.data_ptr()
    end = start + tensor.numel() * tensor.element_size()
    start, end = start - start % page, end + (-end) % page
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), 4)  # MADV_DONTNEED; best effort


Convert = Callable[[torch.Tensor], dict[str, torch.Tensor]]


def converted_source(
    items: list[tuple[Lazy, Convert]], files: ExitStack | None = None, **header: Any
) -> Source:
    """A Source of file tensors that a format renames or splits (one file tensor -> olmo_fn tensors): the
    entries come from converting meta tensors of the same shapes, the stream from converting each tensor
    as it is read. `files` (the open files) is closed when the stream ends."""
    entries = []
    for lazy, convert in items:
        fake = torch.empty(lazy.shape, dtype=lazy.dtype, device="meta")
        entries += [Entry(k, tuple(t.shape), t.dtype) for k, t in convert(fake).items()]

    def tensors() -> Iterator[torch.Tensor]:
        with files or ExitStack():
            for lazy, convert in items:
                for piece in convert(lazy.load()).values():
                    yield piece.contiguous()
                lazy.release()

    return Source(entries, tensors, **header)


def collect(source: Source) -> dict[str, torch.Tensor]:
    """Every tensor of a source in memory, by name (for single-process tools: conversion, unsharding).
    Each is copied: a stream's tensor may share its reader's buffer with the next one."""
    return {e.name: t.clone() for e, t in zip(source.entries, source.tensors(), strict=True)}


# --- where the stream goes ------------------------------------------------------------------------------


def state_targets(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    """Name -> the (sharded) tensor that receives it: parameters, and the optimizer's tensor state.

    The values alias the model's parameters and the optimizer's state, so copying into their local shards
    loads them in place. The optimizer's state is created first.
    """
    targets = {f"model.{k}": v for k, v in get_model_state_dict(model).items()}
    if optimizer is not None:
        create_optimizer_state(optimizer)
        options = StateDictOptions(flatten_optimizer_state_dict=True)
        flat = get_optimizer_state_dict(model, optimizer, options=options)
        targets |= {f"optim.{k}": v for k, v in flat.items() if isinstance(v, torch.Tensor)}
    return targets


def create_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Create the optimizer's per-parameter state (torch makes it lazily, in step) with a zero-lr step on a
    zero gradient, one parameter at a time: the parameters stay exactly as they are (AdamW's decay is
    scaled by lr too), and only one parameter's gradient exists at any moment."""
    if optimizer.state:
        return
    lrs = [group["lr"] for group in optimizer.param_groups]
    for group, lr in zip(optimizer.param_groups, lrs):
        group["lr"] = torch.zeros_like(lr) if isinstance(lr, torch.Tensor) else 0.0
    try:
        for group in optimizer.param_groups:
            for param in group["params"]:
                param.grad = torch.zeros_like(param)
                optimizer.step()
                param.grad = None
    finally:
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = lr


def _local(target: torch.Tensor) -> torch.Tensor:
    return target.to_local() if isinstance(target, DTensor) else target


def _slice_of(target: torch.Tensor) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(global offset, local shape) of this rank's part of a (DTensor or plain) target."""
    if isinstance(target, DTensor):
        shape, offset = compute_local_shape_and_global_offset(
            target.shape, target.device_mesh, target.placements
        )
        return tuple(offset), tuple(shape)
    return (0,) * target.dim(), tuple(target.shape)


def _part(full: torch.Tensor, where: tuple[tuple[int, ...], tuple[int, ...]]) -> torch.Tensor:
    offset, shape = where
    return full[tuple(slice(o, o + n) for o, n in zip(offset, shape))]


def param_names(model: nn.Module) -> dict[int, str]:
    """id(parameter) -> its state-dict name (wrapper prefixes of compile and checkpointing removed)."""
    strip = ("_orig_mod.", "_checkpoint_wrapped_module.", "_fsdp_wrapped_module.")
    names = {}
    for name, p in model.named_parameters():
        for prefix in strip:
            name = name.replace(prefix, "")
        names[id(p)] = name
    return names


def apply_hyperparameters(optimizer: torch.optim.Optimizer, model: nn.Module, rest: dict[str, Any]) -> None:
    """Saved param-group values ("param_groups.{param}.{key}") override the current ones, group by group."""
    names = param_names(model)
    for group in optimizer.param_groups:
        if not group["params"]:
            continue
        first = names[id(group["params"][0])]
        for key, current in list(group.items()):
            saved = rest.get(f"param_groups.{first}.{key}")
            if key == "params" or saved is None:
                continue
            group[key] = tuple(saved) if isinstance(current, tuple) and isinstance(saved, list) else saved


# --- who reads ------------------------------------------------------------------------------------------


@dataclass
class _Readers:
    """This rank's place in the loading: whether it reads, and the group of its node (None = alone)."""

    reads: bool
    group: Any = None

    def broadcast_object(self, obj: Any) -> Any:
        if self.group is None:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, group=self.group, group_src=0)
        return box[0]

    def broadcast(self, tensor: torch.Tensor) -> None:
        if self.group is not None:
            dist.broadcast(tensor, group=self.group, group_src=0)

    def gather_object(self, obj: Any) -> list[Any]:
        """Every node rank's obj, on the reader (in group-rank order); [] elsewhere."""
        if self.group is None:
            return [obj]
        out = [None] * dist.get_world_size(self.group) if self.reads else None
        dist.gather_object(obj, out, group=self.group, group_dst=0)
        return out or []


def _readers() -> _Readers:
    """Local rank 0 of each node reads; its node's ranks receive (torchrun numbers ranks node by node)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return _Readers(reads=True)
    world, rank = dist.get_world_size(), dist.get_rank()
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if per_node >= world or world % per_node:
        return _Readers(reads=rank == 0, group=dist.group.WORLD)
    group, _ = dist.new_subgroups(group_size=per_node)
    return _Readers(reads=rank % per_node == 0, group=group)


def _status(readers: _Readers, error: str, device: torch.device) -> None:
    """Share the reader's outcome with its node: every rank raises the same error, none waits forever."""
    if readers.group is None:
        if error:
            raise CheckpointError(error)
        return
    flag = torch.tensor([1 if error else 0], dtype=torch.int32, device=device)
    readers.broadcast(flag)
    if flag.item():
        raise CheckpointError(readers.broadcast_object(error))


def apply_source(
    open_source: Callable[[bool], Source],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
) -> Source:
    """Load a full-state checkpoint into model (and optimizer) on any mesh; collective under torch.distributed.

    `open_source(with_optim)` is called on the reading rank of each node only. The optimizer is loaded
    when given and the checkpoint has optimizer state (else it stays fresh). Returns the source's header
    (entries, rest, trainer state, config) as every rank received it.
    """
    readers = _readers()
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    header, error, source = None, "", None
    if readers.reads:
        try:
            source = open_source(optimizer is not None)
            header = Source(
                source.entries, None, source.rest, source.trainer_state, source.config, source.kind
            )
        except CheckpointError as e:
            error = str(e)
    _status(readers, error, device)
    header = readers.broadcast_object(header)
    with_optim = optimizer is not None and any(e.name.startswith("optim.") for e in header.entries)
    targets = state_targets(model, optimizer if with_optim else None)
    _check_fits(header, targets)
    layouts = readers.gather_object({name: _slice_of(t) for name, t in targets.items()})
    stream = source.tensors() if source is not None else None
    for entry in header.entries:
        full, error = None, ""
        if stream is not None:
            try:
                full = next(stream).to(device)
            except CheckpointError as e:
                error = str(e)
        _status(readers, error, device)
        _deliver(readers, entry, full, targets[entry.name], layouts)
        del full
    error = ""
    if stream is not None:
        try:
            next(stream, None)  # past the last tensor: the reader checks its checksums
        except CheckpointError as e:
            error = str(e)
    _status(readers, error, device)
    if with_optim:
        apply_hyperparameters(optimizer, model, header.rest)
    return header


def _deliver(
    readers: _Readers, entry: Entry, full: torch.Tensor | None, target: torch.Tensor, layouts: list[dict]
) -> None:
    """The reader sends each rank of its node exactly that rank's slice of `full` (point to point), and
    keeps its own; a receiving rank writes straight into its local shard when it can."""
    local = _local(target)
    if readers.reads:
        sends = []
        for peer, layout in enumerate(layouts[1:], start=1):
            piece = _part(full, layout[entry.name])
            if piece.numel():
                sends.append(dist.isend(piece.contiguous(), group=readers.group, group_dst=peer))
        local.copy_(_part(full, layouts[0][entry.name]))
        for work in sends:
            work.wait()
        return
    if not local.numel():
        return
    direct = local.is_contiguous() and local.dtype == entry.dtype
    buffer = local if direct else torch.empty(local.shape, dtype=entry.dtype, device=local.device)
    dist.recv(buffer, group=readers.group, group_src=0)
    if not direct:
        local.copy_(buffer)


def _check_fits(header: Source, targets: dict[str, Any]) -> None:
    """Every target gets a tensor of its shape; the same verdict on every rank (no communication)."""
    names = {e.name for e in header.entries}
    wanted = set(targets)
    missing = sorted(wanted - names)
    if missing:
        what = "optimizer state" if missing[0].startswith("optim.") else "weights"
        hint = (
            "; pass --reset_optimizer_state to start the optimizer afresh"
            if what == "optimizer state"
            else ""
        )
        raise CheckpointError(
            f"checkpoint does not fit the model/optimizer: it has no {what} for {missing[0]!r}"
            f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}{hint}"
        )
    for entry in header.entries:
        if entry.name not in targets:
            raise CheckpointError(
                f"checkpoint does not fit the model/optimizer: it has {entry.name!r}, which the model has not"
            )
        shape = tuple(targets[entry.name].shape)
        if shape != tuple(entry.shape):
            raise CheckpointError(
                f"checkpoint does not fit the model/optimizer: {entry.name!r} is {list(entry.shape)} in the "
                f"checkpoint but {list(shape)} in the model; check the model config against the checkpoint's"
            )
