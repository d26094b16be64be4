"""DCP's fsspec filesystem for object stores and HTTP, made robust: every call retried on transient failures,
reads by exact ranges that must come back whole, writes spooled to a local file and uploaded in one piece."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch.distributed.checkpoint import _fsspec_filesystem

from olmo_fn import retry
from olmo_fn.checkpoint import storage


class RemoteFileSystem(_fsspec_filesystem.FileSystem):
    """DCP's fsspec wrapper with olmo_fn's retries; files open for reading without a read-ahead cache."""

    def _url(self, path: Any) -> str:
        return self.fs.unstrip_protocol(str(path))

    @contextmanager
    def create_stream(self, path: Any, mode: str) -> Iterator[Any]:
        with (storage.open_read if "r" in mode else storage.open_write)(self._url(path)) as stream:
            yield stream

    def rename(self, path: Any, new_path: Any) -> None:  # copy, then delete: each step retried on its own
        retry.retrying(self._url(new_path), lambda: self.fs.copy(str(path), str(new_path)))
        storage.remove(self._url(path))

    def mkdir(self, path: Any) -> None:
        retry.retrying(self._url(path), lambda: self.fs.makedirs(str(path), exist_ok=True))

    def exists(self, path: Any) -> bool:
        return storage.exists(self._url(path))

    def rm_file(self, path: Any) -> None:
        storage.remove(self._url(path))

    def ls(self, path: Any) -> list[str]:
        return retry.retrying(self._url(path), lambda: self.fs.ls(str(path), detail=False))
