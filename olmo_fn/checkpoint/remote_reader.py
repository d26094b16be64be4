"""A remote file read by exact byte ranges, each retried on transient failures and refused when short."""

from __future__ import annotations

import io
from typing import Any

from olmo_fn import retry


class RemoteReader(io.RawIOBase):
    """A remote file read by ranges: each read is one request, tried again on a transient failure, and a
    range that comes back short counts as such a failure (a partial object is never accepted)."""

    def __init__(self, url: str, file: Any):
        super().__init__()
        self.url, self.file, self.pos, self.size = url, file, 0, int(file.size)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.pos = max(0, {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence] + offset)
        return self.pos

    def read(self, n: int | None = -1) -> bytes:
        want = self.size - self.pos if n is None or n < 0 else max(0, min(n, self.size - self.pos))
        if not want:
            return b""
        start = self.pos

        def once() -> bytes:
            self.file.seek(start)
            data = self.file.read(want)
            if len(data) != want:
                raise retry.TransientError(f"got {len(data)} of {want} bytes at offset {start}")
            return data

        data = retry.retrying(self.url, once)
        self.pos = start + want
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(memoryview(buffer).cast("B")))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self.file.close()
        super().close()
