"""What every rank of a collective checkpoint write agrees on: who it is, when all are done, and whether any
rank failed to write (a full disk, a lost mount), so that all raise the same error instead of some waiting
in a collective for ever. Without a process group each is the single-process case."""

from __future__ import annotations

import errno
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch.distributed as dist
from torch.distributed.checkpoint.api import CheckpointException

from olmo_fn.checkpoint import storage
from olmo_fn.errors import CheckpointError, OlmoFnError


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


def on_every_rank(fn: Callable[[], Any]) -> Any:
    """fn() on this rank, then every rank learns whether any rank's fn failed to write (OSError, or a DCP
    write error) and raises the same CheckpointError: no rank is left waiting in a collective."""
    result, errors = None, []
    try:
        result = fn()
    except CheckpointException as e:
        errors = [cause for cause, _ in e.failures.values()] or [e]
    except (OSError, RuntimeError, CheckpointError) as e:  # RuntimeError: torch.save on a failed write;
        errors = [e]  # CheckpointError: a remote store that kept failing
    gathered = [error for part in all_gather([_describe(e) for e in errors]) for error in part]
    if gathered:  # the same choice on every rank: an operating system's reason first
        raise CheckpointError(min(gathered, key=lambda error: (not error[0], error[1]))[1])
    return result


def write_failure(failures: list[BaseException], path: str) -> BaseException:
    """The failure to report: one the operating system explains if any; else ENOSPC when the disk is (all
    but) full, which torch.save's zip writer reports only as "unexpected pos"."""
    explained = [f for f in failures if _describe(f)[0]]
    if explained:
        return explained[0]
    if storage.is_local(path):
        try:
            if shutil.disk_usage(path).free < 16 * 2**20:
                return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        except OSError:
            pass
    return failures[0]


def _describe(error: BaseException) -> tuple[bool, str]:
    """(whether the operating system said why, one line of why): the OSError behind an error if there is
    one (torch.save's zip writer turns a full disk into "unexpected pos")."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OlmoFnError):  # already one line of why (a remote store that kept failing)
            return True, str(seen)
        if isinstance(seen, OSError):
            return True, str(seen.strerror or seen)
        seen = seen.__cause__ or seen.__context__
    return False, str(error).splitlines()[0] if str(error) else type(error).__name__


@contextmanager
def recorded_thread_errors(recorded: list[BaseException]) -> Iterator[None]:
    """Keep Python from printing a traceback for a DCP writer thread's error that `recorded` holds (it is
    reported as one line instead); any other thread error is printed as usual."""
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        seen = args.exc_value  # the error itself, or one raised while the stream was closed after it
        while seen is not None and not any(seen is r for r in recorded):
            seen = seen.__context__
        if seen is None:
            previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous
