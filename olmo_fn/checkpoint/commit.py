"""Saving with a commit protocol, `latest` pointers, pruning, and finding the newest complete checkpoint.

A save writes `step{N}[-unsharded]-tmp/` and renames it into place (local), or writes the final folder
directly (object stores); either way manifest.json is written after every other file, and only folders
with a manifest count. Pointers move and old checkpoints are pruned only after that, so a crash at any
moment leaves the previous checkpoint loadable and `latest` pointing at a complete one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from olmo_fn.checkpoint import storage
from olmo_fn.checkpoint.collective import barrier, on_every_rank, rank_and_world
from olmo_fn.checkpoint.dcp import write_sharded_dir
from olmo_fn.checkpoint.native import Content, gather_full_state, write_native_dir
from olmo_fn.checkpoint.run_folder import STEP_DIR as _STEP_DIR
from olmo_fn.checkpoint.run_folder import TMP_DIR as _TMP_DIR
from olmo_fn.errors import CheckpointError, ConfigError


def checkpoint_name(step: int, sharded: bool) -> str:
    """step{N} for sharded checkpoints, step{N}-unsharded for native ones (as the original names them)."""
    return f"step{step}" if sharded else f"step{step}-unsharded"


def pointer_name(sharded: bool) -> str:
    """`latest` or `latest-unsharded`."""
    return "latest" if sharded else "latest-unsharded"


def save_checkpoint(
    save_folder: str,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    config: dict[str, Any],
    *,
    sharded: bool,
    keep: int,
) -> str:
    """Save model, optimizer, trainer state and config as step{N}[-unsharded]; returns its path.

    Collective under torch.distributed (every rank calls it). keep: how many of this kind to keep (-1 = all).
    """
    if keep == 0:
        raise ConfigError(
            "checkpoint keep=0 means this kind of checkpoint is off, so there is nothing to save; "
            "use a positive count, or -1 to keep all"
        )
    if keep < -1:
        raise ConfigError(f"checkpoint keep={keep}: use a positive count, or -1 to keep all")
    rank, _ = rank_and_world()
    name = checkpoint_name(step, sharded)
    final = storage.join(save_folder, name)
    work = storage.join(save_folder, name + "-tmp") if storage.is_local(save_folder) else final
    if rank == 0:
        storage.remove(work)  # leftovers of a crashed save; remotely: the old copy loses its manifest
    barrier()
    try:
        if sharded:
            write_sharded_dir(work, model, optimizer, trainer_state, config, step)
        else:
            msd, osd = gather_full_state(model, optimizer)
            content = Content(msd, osd, trainer_state, config)
            on_every_rank(lambda: rank == 0 and write_native_dir(work, content, step))
    except CheckpointError as e:  # a full disk, a lost mount, a store that kept failing: keep the rest
        reason = str(e)
        _best_effort(lambda: on_every_rank(lambda: rank == 0 and storage.remove(work)))
        previous = _best_effort(lambda: find_latest(save_folder))
        fix = (
            "free space there or save elsewhere (--save_folder)"
            if storage.is_local(save_folder)
            else "when the store answers again, resume with --try_load_latest_save"
        )
        raise CheckpointError(
            f"{save_folder}: {name} was not saved ({reason}); nothing was published and "
            + (
                f"the previous checkpoint {previous} is intact"
                if previous
                else "no earlier checkpoint is known"
            )
            + f"; {fix}"
        ) from None
    if rank == 0:
        if work != final:
            storage.publish_dir(work, final)
        storage.set_pointer(save_folder, pointer_name(sharded), name)
        prune(save_folder, sharded, keep)
    barrier()
    return final


def _best_effort(fn: Any) -> Any:
    """fn(), or None when storage fails too (the cleanup after a failed save must not hide its reason; a
    folder without a manifest never counts and is pruned by a later save)."""
    try:
        return fn()
    except (OSError, CheckpointError):
        return None


def _step_dirs(save_folder: str) -> list[tuple[int, bool, str]]:
    """(step, sharded, name) of every step folder, complete or not."""
    out = []
    for name in storage.list_names(save_folder):
        match = _STEP_DIR.match(name)
        if match:
            out.append((int(match.group(1)), match.group(2) is None, name))
    return out


def is_complete(path: str) -> bool:
    """Whether a checkpoint folder's save finished (its manifest exists)."""
    return storage.exists(storage.join(path, storage.MANIFEST))


def prune(save_folder: str, sharded: bool, keep: int) -> None:
    """Delete all but the newest `keep` complete checkpoints of one kind, and older unfinished saves."""
    dirs = sorted((s, n) for s, is_sharded, n in _step_dirs(save_folder) if is_sharded == sharded)
    complete = [(s, n) for s, n in dirs if is_complete(storage.join(save_folder, n))]
    keep_names = {n for _, n in complete} if keep == -1 else {n for _, n in complete[-keep:]}
    newest = complete[-1][0] if complete else -1
    for step, name in dirs:
        if name not in keep_names and step <= newest:
            storage.remove(storage.join(save_folder, name))
    for name in storage.list_names(save_folder):
        if _TMP_DIR.match(name):
            storage.remove(storage.join(save_folder, name))


def find_latest(save_folder: str) -> str | None:
    """The newest complete checkpoint in a save folder (sharded preferred on a tie), or None."""
    candidates = _step_dirs(save_folder)
    if not candidates:  # not listable (https): follow the pointers instead
        for sharded in (True, False):
            target = storage.read_pointer(save_folder, pointer_name(sharded))
            match = _STEP_DIR.match(target or "")
            if match:
                candidates.append((int(match.group(1)), match.group(2) is None, target))
    for _, _, name in sorted(candidates, reverse=True):
        if is_complete(storage.join(save_folder, name)):
            return storage.join(save_folder, name)
    return None
