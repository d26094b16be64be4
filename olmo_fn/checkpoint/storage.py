"""Paths as fsspec URLs: local, gs://, s3://, https:// (read-only), with atomic publishing and pointers.

Local folders get a crash-safe protocol from the filesystem itself (write under a temporary name, fsync,
rename). Object stores have no rename of folders, so there a checkpoint is complete only once its manifest,
written last, exists; `latest` pointers are symlinks locally and one-line files on object stores.
Storage options (endpoints, keys) come from fsspec's own configuration: `fsspec.config.conf["s3"]` or the
`FSSPEC_S3_ENDPOINT_URL`-style environment variables.

Every remote operation is retried on transient failures (`olmo_fn.retry`): reads by range check that every
byte asked for came back, and a remote file is written to a local temporary file first (in $TMPDIR) and
uploaded whole, so an upload cut short is sent again from the start instead of being lost half-way.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

import fsspec
import xxhash

from olmo_fn import retry
from olmo_fn.checkpoint.remote_reader import RemoteReader
from olmo_fn.errors import CheckpointError, ConfigError

MANIFEST = "manifest.json"


def is_local(url: str) -> bool:
    """True for plain paths and file:// URLs."""
    return "://" not in url or url.startswith("file://")


def local_path(url: str) -> str:
    """A local URL as an OS path."""
    return url[len("file://") :] if url.startswith("file://") else url


def join(base: str, *names: str) -> str:
    """base/name/... for paths and URLs alike."""
    return "/".join([base.rstrip("/"), *(n.strip("/") for n in names)])


def url_to_fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem of a URL and the path inside it."""
    return fsspec.core.url_to_fs(url)


def exists(url: str) -> bool:
    """Whether a file or folder exists at url."""
    if is_local(url):
        return os.path.exists(local_path(url))
    fs, path = url_to_fs(url)
    strict = {"strict": True} if type(fs).__name__ == "HTTPFileSystem" else {}  # else a 500 reads as "no"
    return bool(_answer(url, lambda: fs.exists(path, **strict), False))


def _answer(url: str, ask: Callable[[], Any], otherwise: Any) -> Any:
    """ask(), retried on transient failures; `otherwise` when the store answers that it cannot (a missing
    or unlistable folder, a refused key): only a definite answer counts as "no"."""

    def once() -> Any:
        try:
            return ask()
        except (OSError, ValueError) as e:
            if retry.is_transient(e):
                raise
            return otherwise

    return retry.retrying(url, once)


def read_bytes(url: str) -> bytes:
    """The whole content of a file; CheckpointError naming it when it is missing."""
    try:
        if is_local(url):
            with open(local_path(url), "rb") as f:
                return f.read()
        fs, path = url_to_fs(url)
        return retry.retrying(url, lambda: fs.cat_file(path))
    except FileNotFoundError as e:
        raise CheckpointError(f"{url}: no such file") from e


@contextmanager
def open_read(url: str) -> Iterator[IO[bytes]]:
    """A binary file opened for reading by ranges: every read fetches exactly the bytes asked for
    (no read-ahead cache on object stores), so a reader that seeks pays only for what it reads."""
    try:
        if is_local(url):
            f = open(local_path(url), "rb", buffering=0)  # noqa: SIM115 - closed below
        else:
            fs, path = url_to_fs(url)
            f = RemoteReader(url, retry.retrying(url, lambda: fs.open(path, "rb", cache_type="none")))
    except FileNotFoundError as e:
        raise CheckpointError(f"{url}: no such file") from e
    with f:
        yield f


class AtomicFile:
    """A file written piece by piece and published whole by commit(): a local one under a temporary name
    beside it, fsynced and renamed; a remote one spooled to $TMPDIR and uploaded in one piece (retried).
    abort() leaves nothing behind, and until commit() readers see the file as it was."""

    def __init__(self, url: str):
        self.url, self.size = url, 0
        if is_local(url):
            path = local_path(url)
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            self._tmp: str | None = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
            self.file: IO[bytes] = open(self._tmp, "wb")  # noqa: SIM115 - closed by commit/abort
        else:
            self._tmp = None
            self.file = tempfile.NamedTemporaryFile(prefix="olmo_fn-upload-")  # noqa: SIM115 - as above

    def write(self, data: bytes | memoryview) -> None:
        """Append bytes."""
        self.file.write(data)
        self.size += memoryview(data).nbytes

    def commit(self) -> None:
        """Publish what was written under the final name."""
        self.file.flush()
        if self._tmp is not None:
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self._tmp, local_path(self.url))
            return
        fs, path = url_to_fs(self.url)
        try:
            retry.retrying(self.url, lambda: fs.put_file(self.file.name, path))
        finally:
            self.file.close()

    def abort(self) -> None:
        """Drop what was written."""
        self.file.close()
        if self._tmp is not None and os.path.exists(self._tmp):
            os.remove(self._tmp)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        """Publish on success, drop on an exception."""
        if kind is None:
            self.commit()
        else:
            self.abort()


@contextmanager
def open_write(url: str) -> Iterator[IO[bytes]]:
    """A binary file opened for writing: local files are written in place and fsynced before close (their
    folder is published whole, see commit.py); remote ones are an AtomicFile."""
    if is_local(url):
        path = local_path(url)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        return
    with AtomicFile(url) as out:
        yield out.file


def write_bytes(url: str, data: bytes) -> None:
    """Write a whole file atomically: readers see the old file or the new one, never half of it."""
    if not is_local(url):
        fs, path = url_to_fs(url)
        retry.retrying(url, lambda: fs.pipe_file(path, data))
        return
    with AtomicFile(url) as out:
        out.write(data)


def list_names(url: str) -> list[str]:
    """Names of the entries directly inside a folder ([] when it is missing or not listable)."""
    if is_local(url):
        path = local_path(url)
        return sorted(os.listdir(path)) if os.path.isdir(path) else []
    fs, path = url_to_fs(url)
    fs.invalidate_cache(path)
    entries = _answer(url, lambda: fs.ls(path, detail=False), None)
    if entries is None:
        return []
    return sorted({e.rstrip("/").rsplit("/", 1)[-1] for e in entries} - {""})


def list_files(url: str) -> dict[str, int]:
    """Relative path -> size of every file below a folder."""
    if is_local(url):
        root, out = local_path(url), {}
        for folder, _, files in os.walk(root):
            for name in files:
                full = os.path.join(folder, name)
                out[os.path.relpath(full, root)] = os.path.getsize(full)
        return out
    fs, path = url_to_fs(url)
    fs.invalidate_cache(path)

    def find() -> dict:
        found = fs.find(path, detail=True)
        if any("type" not in v for v in found.values()):  # seen from an HTTP server dropping responses
            raise retry.TransientError(f"{url}: an incomplete listing (an entry without its type)")
        return found

    found = _answer(url, find, None)
    if found is None:
        return {}
    return {
        k[len(path.rstrip("/")) + 1 :]: int(v["size"])
        if v.get("size") is not None
        else size(fs.unstrip_protocol(k))
        for k, v in found.items()
        if v["type"] == "file"
    }


def size(url: str) -> int:
    """A file's size in bytes (a stat or a HEAD request, no reading)."""
    if is_local(url):
        return os.path.getsize(local_path(url))
    fs, path = url_to_fs(url)
    return int(retry.retrying(url, lambda: fs.size(path)))


def remove(url: str) -> None:
    """Remove a file or folder tree if it exists."""
    if is_local(url):
        path = local_path(url)
        if os.path.islink(path) or os.path.isfile(path):
            os.remove(path)
        elif os.path.isdir(path):
            import shutil

            shutil.rmtree(path)
        return
    fs, path = url_to_fs(url)

    def once() -> None:
        try:
            fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass
        fs.invalidate_cache(path)

    retry.retrying(url, once)


def check_output(url: str, overwrite: bool, reads: list[str]) -> None:
    """Refuse an output that is a file, one that already exists (unless `overwrite`), and one that is or
    holds an input the command reads (`reads`): nothing a user has is replaced unasked."""
    norm = (lambda u: u.rstrip("/")) if not is_local(url) else (lambda u: os.path.realpath(local_path(u)))
    for source in filter(None, reads):
        if is_local(source) == is_local(url) and (norm(source) + "/").startswith(norm(url) + "/"):
            raise ConfigError(f"{url}: the output would replace the input {source}; write to another folder")
    if is_local(url) and os.path.isfile(local_path(url)):
        raise ConfigError(f"{url}: is a file; give the path of a folder to create")
    if exists(url) and list_names(url) and not overwrite:  # an empty folder holds nothing to lose
        raise ConfigError(f"{url}: already exists; pass --overwrite to replace it, or choose another folder")


def write_then_publish(url: str, write: Callable[[str], None]) -> None:
    """write(folder) into a temporary sibling of a local `url`, then move it into place (an older one is
    replaced only then); a failed write leaves `url` as it was and no temporary folder. Remote URLs are
    written directly by `write`."""
    if not is_local(url):
        write(url)
        return
    tmp = f"{local_path(url).rstrip('/')}-tmp-{uuid.uuid4().hex[:8]}"
    try:
        write(tmp)
        publish_dir(tmp, url)
    except BaseException:
        remove(tmp)
        raise


def publish_dir(tmp_url: str, final_url: str) -> None:
    """Move a finished local folder to its final name; an older folder of that name is replaced."""
    src, dst = local_path(tmp_url), local_path(final_url)
    if os.path.exists(dst):
        trash = f"{dst}-old-tmp-{uuid.uuid4().hex[:8]}"
        os.rename(dst, trash)
        os.rename(src, dst)
        remove(trash)
    else:
        os.rename(src, dst)
    fsync_dir(os.path.dirname(dst))


def fsync_dir(path: str) -> None:
    """Make a rename inside a local folder durable."""
    fd = os.open(path or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def set_pointer(folder: str, name: str, target: str) -> None:
    """Point folder/name at folder/target: a relative symlink locally, a one-line file elsewhere."""
    if is_local(folder):
        link, tmp = (
            local_path(join(folder, name)),
            local_path(join(folder, f".{name}.tmp-{uuid.uuid4().hex[:8]}")),
        )
        try:
            os.symlink(target, tmp)
        except OSError:
            write_bytes(join(folder, name), target.encode())
            return
        os.replace(tmp, link)
        fsync_dir(local_path(folder))
        return
    write_bytes(join(folder, name), target.encode())


def read_pointer(folder: str, name: str) -> str | None:
    """The target name of a pointer written by set_pointer, or None."""
    url = join(folder, name)
    if is_local(folder) and os.path.islink(local_path(url)):
        return os.readlink(local_path(url)).rstrip("/").rsplit("/", 1)[-1]
    if not exists(url):
        return None
    return read_bytes(url).decode().strip() or None


def hasher() -> xxhash.xxh3_64:
    """A streaming checksum (XXH3-64: about 10 GB/s, so it costs little next to the I/O)."""
    return xxhash.xxh3_64()


def checksum(data: bytes | memoryview) -> str:
    """Hex XXH3-64 of data."""
    return xxhash.xxh3_64_hexdigest(data)


def entry(data: bytes) -> dict[str, Any]:
    """The manifest entry of a file's bytes."""
    return {"size": len(data), "xxh3": checksum(data)}


def check_file(url: str, data: bytes, entry: dict[str, Any]) -> None:
    """Compare a file's bytes with its manifest entry; CheckpointError on a mismatch."""
    size, digest = len(data), checksum(data)
    if size != entry["size"] or digest != entry["xxh3"]:
        raise CheckpointError(
            f"{url}: size/checksum {size}/{digest} differs from the manifest's {entry['size']}/{entry['xxh3']}; "
            "the file is corrupt or was changed after saving: restore it or load another checkpoint"
        )
