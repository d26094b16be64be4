"""Token files: their dtype, size and byte-range reads, local (memory maps) or by fsspec URL, with checks
that name the file at fault."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
from fsspec.implementations.local import LocalFileSystem

from olmo_fn import retry
from olmo_fn.errors import ConfigError, DataError, OlmoFnError

DTYPES: dict[str, type[np.unsignedinteger]] = {
    "uint8": np.uint8,
    "uint16": np.uint16,
    "uint32": np.uint32,
    "uint64": np.uint64,
}
VOCAB_SAMPLE_TOKENS = 1 << 16  # ids checked against the vocabulary at load, from the start of each file
MAX_OPEN_FILES = 256  # memory maps kept open per process


def token_dtype(name: str) -> np.dtype:
    """The numpy dtype of a memmap_dtype name, or ConfigError naming the allowed ones."""
    if name not in DTYPES:
        raise ConfigError(f"data.memmap_dtype: unknown dtype {name!r}; use one of {', '.join(DTYPES)}")
    return np.dtype(DTYPES[name])


def local_file_path(path: str) -> str | None:
    """The plain filesystem path of a local path or file:// URL, else None (a remote URL)."""
    if "://" not in path:
        return path
    fs, stripped = fsspec.core.url_to_fs(path)
    return stripped if isinstance(fs, LocalFileSystem) else None


def file_size(path: str) -> int:
    """Size in bytes of a local or remote file; DataError naming the file if it is missing or unreadable."""
    try:
        local = local_file_path(path)
        if local is not None:
            if os.path.isdir(local):
                raise DataError(f"{path}: is a directory; list the token files in it instead")
            if not os.access(local, os.R_OK) and os.path.exists(local):
                raise PermissionError(local)
            return os.path.getsize(local)
        fs, stripped = fsspec.core.url_to_fs(path)
        return int(retry.retrying(path, lambda: fs.size(stripped), error=DataError))
    except FileNotFoundError as e:
        raise DataError(
            f"{path}: file not found; check the path (and, for a URL, its bucket and credentials)"
        ) from e
    except PermissionError as e:
        raise DataError(f"{path}: permission denied; make the file readable or fix the credentials") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e}); check the path and the connection") from e


def read_range(path: str, start: int, length: int) -> bytes:
    """Bytes [start, start+length) of a local or remote file, as one byte-range read."""
    try:
        local = local_file_path(path)
        if local is not None:
            with open(local, "rb") as f:
                return os.pread(f.fileno(), length, start)
        fs, stripped = fsspec.core.url_to_fs(path)
        return retry.retrying(
            path,
            lambda: _whole(fs.cat_file(stripped, start=start, end=start + length), length),
            error=DataError,
        )
    except OSError as e:
        raise DataError(f"{path}: cannot read bytes {start}..{start + length} ({e}); check the file") from e


def _whole(data: bytes, length: int) -> bytes:
    """data, if it is all `length` bytes asked for; a range cut short is a transient failure (tried again)."""
    if len(data) != length:
        raise retry.TransientError(f"got {len(data)} of {length} bytes")
    return data


def read_ranges(requests: list[tuple[str, int, int]]) -> list[bytes]:
    """Bytes of many (url, start, length) ranges of remote files, fetched concurrently (one round trip)."""
    groups: dict[int, tuple[fsspec.AbstractFileSystem, list[int]]] = {}
    stripped: list[str] = []
    for i, (path, _, _) in enumerate(requests):
        fs, name = fsspec.core.url_to_fs(path)
        stripped.append(name)
        groups.setdefault(id(fs), (fs, []))[1].append(i)
    out: list[bytes] = [b""] * len(requests)
    for fs, members in groups.values():
        starts = [requests[i][1] for i in members]
        ends = [requests[i][1] + requests[i][2] for i in members]
        results = fs.cat_ranges([stripped[i] for i in members], starts, ends, on_error="return")
        for i, data in zip(members, results, strict=True):
            path, start, length = requests[i]
            if isinstance(data, bytes) and len(data) == length:
                out[i] = data
                continue
            if isinstance(data, BaseException) and not retry.is_transient(data):
                raise DataError(
                    f"{path}: cannot read bytes {start}..{start + length} ({data}); check the file"
                )
            out[i] = read_range(path, start, length)  # transient, or cut short: again, alone, with retries
    return out


@dataclass(frozen=True)
class TokenFile:
    """One token file: where it is, how many tokens it holds, its label mask file and metadata."""

    path: str
    num_tokens: int
    label_mask_path: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def describe_token_file(
    path: str,
    dtype: np.dtype,
    *,
    label_mask_path: str | None = None,
    metadata: dict[str, Any] | None = None,
    vocab_size: int | None = None,
) -> TokenFile:
    """Check a token file (size, label-mask length, a sample of ids against vocab_size) and describe it."""
    size = file_size(path)
    if size % dtype.itemsize:
        raise DataError(
            f"{path}: size {size} bytes is not a multiple of {dtype.itemsize} ({dtype.name}); "
            f"the file is truncated or data.memmap_dtype is wrong"
        )
    num_tokens = size // dtype.itemsize
    if label_mask_path is not None:
        mask_size = file_size(label_mask_path)
        if mask_size != num_tokens:
            raise DataError(
                f"{label_mask_path}: label mask holds {mask_size} entries but {path} holds {num_tokens} "
                f"tokens; a label mask is one bool byte per token, written with its token file"
            )
    if vocab_size is not None and num_tokens:
        sample = np.frombuffer(
            read_range(path, 0, min(num_tokens, VOCAB_SAMPLE_TOKENS) * dtype.itemsize), dtype
        )
        check_vocab(sample, vocab_size, path)
    return TokenFile(path, num_tokens, label_mask_path, dict(metadata or {}))


def check_vocab(tokens: np.ndarray, vocab_size: int, path: str, offset: int = 0) -> None:
    """DataError naming the file if a token id is at or past vocab_size."""
    if tokens.size and int(tokens.max()) >= vocab_size:
        where = offset + int(np.argmax(tokens >= vocab_size))
        raise DataError(
            f"{path}: token id {int(tokens[where - offset])} at token {where} is not below vocab_size "
            f"{vocab_size}; the file was made with another tokenizer or data.memmap_dtype is wrong"
        )


def describe_token_files(
    paths: list[str],
    dtype: np.dtype,
    *,
    label_mask_paths: list[str] | None = None,
    metadata: list[dict[str, Any]] | None = None,
    vocab_size: int | None = None,
) -> list[TokenFile]:
    """describe_token_file for many files at once, in parallel threads (remote sizes are round trips)."""
    if not paths:
        raise ConfigError("data.paths (or data.datasets) is empty; give at least one token file")
    if label_mask_paths is not None and len(label_mask_paths) != len(paths):
        raise ConfigError(
            f"data.label_mask_paths has {len(label_mask_paths)} files for {len(paths)} data paths; give one per path"
        )
    masks = label_mask_paths or [None] * len(paths)
    metas = metadata or [{"path": p} for p in paths]

    def one(i: int) -> TokenFile:
        return describe_token_file(
            paths[i], dtype, label_mask_path=masks[i], metadata=metas[i], vocab_size=vocab_size
        )

    with ThreadPoolExecutor(max_workers=min(16, len(paths))) as pool:
        return list(pool.map(one, range(len(paths))))


def tokenizer_notes(paths: list[str]) -> list[str]:
    """A warning when the token files' folders were made by different tokenizers, by the tokenizer_sha256
    their manifest.json records (prepare_data.py and prepare_sft_data.py write one); folders without a
    manifest are not judged."""
    import json

    from olmo_fn.checkpoint import storage

    made_by: dict[str, list[str]] = {}
    for folder in dict.fromkeys(p.rsplit("/", 1)[0] if "/" in p else "." for p in paths):
        manifest = f"{folder}/manifest.json"
        try:
            digest = json.loads(storage.read_bytes(manifest)).get("tokenizer_sha256")
        except (OSError, ValueError, AttributeError, OlmoFnError):
            continue  # no manifest, or not ours
        if isinstance(digest, str):
            made_by.setdefault(digest, []).append(folder)
    if len(made_by) < 2:
        return []
    groups = "; ".join(f"{', '.join(folders)} (tokenizer sha256 {d[:12]})" for d, folders in made_by.items())
    return [f"warning: the token files were made by different tokenizers: {groups}; tokenise them all alike"]
