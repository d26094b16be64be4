"""Token datasets over the original OLMo's raw token files, read by byte range from local paths or fsspec URLs.

A token file is a headerless array of token ids (named `.npy` by convention, but with no numpy header).
Instance i of a file is tokens [i*seq_len, (i+1)*seq_len); each file's tail shorter than seq_len is dropped.
Instances of all files are numbered in path order (for named groups: groups in sorted label order).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import torch
from fsspec.implementations.local import LocalFileSystem
from torch.utils.data import Dataset

from olmo_fn.config import DataConfig, InstanceFilterConfig
from olmo_fn.errors import ConfigError, DataError

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


def _local_path(path: str) -> str | None:
    """The plain filesystem path of a local path or file:// URL, else None (a remote URL)."""
    if "://" not in path:
        return path
    fs, stripped = fsspec.core.url_to_fs(path)
    return stripped if isinstance(fs, LocalFileSystem) else None


def file_size(path: str) -> int:
    """Size in bytes of a local or remote file; DataError naming the file if it is missing or unreadable."""
    try:
        local = _local_path(path)
        if local is not None:
            if os.path.isdir(local):
                raise DataError(f"{path}: is a directory; list the token files in it instead")
            if not os.access(local, os.R_OK) and os.path.exists(local):
                raise PermissionError(local)
            return os.path.getsize(local)
        fs, stripped = fsspec.core.url_to_fs(path)
        return int(fs.size(stripped))
    except FileNotFoundError as e:
        raise DataError(
            f"{path}: file not found; check the path (and, for a URL, its bucket and credentials)"
        ) from e
    except PermissionError as e:
        raise DataError(f"{path}: permission denied; make the file readable or fix the credentials") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e}); check the path and the connection") from e


def read_bytes(path: str, start: int, length: int) -> bytes:
    """Bytes [start, start+length) of a local or remote file, as one byte-range read."""
    try:
        local = _local_path(path)
        if local is not None:
            with open(local, "rb") as f:
                return os.pread(f.fileno(), length, start)
        fs, stripped = fsspec.core.url_to_fs(path)
        return fs.cat_file(stripped, start=start, end=start + length)
    except OSError as e:
        raise DataError(f"{path}: cannot read bytes {start}..{start + length} ({e}); check the file") from e


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
            if isinstance(data, BaseException) or len(data) != length:
                reason = data if isinstance(data, BaseException) else f"got {len(data)} bytes"
                raise DataError(
                    f"{path}: cannot read bytes {start}..{start + length} ({reason}); check the file"
                )
            out[i] = data
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
            read_bytes(path, 0, min(num_tokens, VOCAB_SAMPLE_TOKENS) * dtype.itemsize), dtype
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


def max_repetition_count(tokens: np.ndarray, max_period: int, min_period: int = 1) -> int:
    """Most back-to-back repeats of any n-gram with period in [min_period, max_period] (0 if under 3)."""
    n = len(tokens)
    best = 0
    for period in range(max(min_period, 1), min(max_period, n // 3) + 1):
        same = np.concatenate([[False], tokens[period:] == tokens[:-period], [False]])
        edges = np.flatnonzero(np.diff(same.view(np.int8)))
        if edges.size == 0:
            continue
        run = int((edges[1::2] - edges[::2]).max())
        times = (run + period) // period
        if times >= 3:  # the original's detector only reports periods seen at least three times
            best = max(best, times)
    return best


def keep_instance(tokens: np.ndarray, cfg: InstanceFilterConfig) -> bool:
    """False when an n-gram repeats at least repetition_max_count times in a row (OLMo 2's filter)."""
    count = max_repetition_count(tokens, cfg.repetition_max_period, cfg.repetition_min_period)
    return count < cfg.repetition_max_count


def document_lengths(tokens: np.ndarray, eos_token_id: int) -> np.ndarray:
    """Lengths of the EOS-terminated documents of an instance; the last one is closed at the end."""
    ends = np.flatnonzero(tokens == eos_token_id) + 1
    if ends.size == 0 or ends[-1] != len(tokens):
        ends = np.append(ends, len(tokens))
    return np.diff(ends, prepend=0)


class TokenDataset(Dataset):
    """Instances of seq_len tokens over token files: item i is a dict of tensors, read_batch(ids) a batch."""

    def __init__(
        self,
        files: list[TokenFile],
        seq_len: int,
        dtype: np.dtype,
        *,
        vocab_size: int | None = None,
        pad_token_id: int | None = None,
        eos_token_id: int | None = None,
        generate_attention_mask: bool = False,
        generate_doc_lengths: bool = False,
        instance_filter: InstanceFilterConfig | None = None,
    ):
        if seq_len <= 0:
            raise ConfigError(f"model.max_sequence_length must be positive, got {seq_len}")
        if generate_attention_mask and pad_token_id is None:
            raise ConfigError("data.generate_attention_mask needs the model's pad_token_id")
        if generate_doc_lengths and eos_token_id is None:
            raise ConfigError("data.generate_doc_lengths needs the model's eos_token_id")
        self.files = files
        self.seq_len = seq_len
        self.dtype = np.dtype(dtype)
        self.vocab_size = vocab_size
        self.pad_token_id = pad_token_id
        self.eos_token_id = eos_token_id
        self.generate_attention_mask = generate_attention_mask
        self.generate_doc_lengths = generate_doc_lengths
        self.instance_filter = instance_filter
        counts = np.array([f.num_tokens // seq_len for f in files], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])  # instance id range of file k: [o[k], o[k+1])
        self._maps: dict[str, np.ndarray | str] = {}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": {}}  # maps are reopened in each worker process

    def locate(self, index: int) -> tuple[int, int]:
        """(file number, instance number within that file) of a global instance id."""
        if not 0 <= index < len(self):
            raise IndexError(f"instance {index} is out of range for a dataset of {len(self)} instances")
        k = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return k, index - int(self.offsets[k])

    def _source(self, path: str, dtype: np.dtype) -> np.ndarray | str:
        """A read-only memory map of a local file (pages are read on demand), or the URL of a remote one."""
        src = self._maps.get(path)
        if src is None:
            local = _local_path(path)
            try:
                src = path if local is None else np.memmap(local, dtype=dtype, mode="r").view(np.ndarray)
            except OSError as e:
                raise DataError(f"{path}: cannot open the file ({e}); check that it still exists") from e
            if len(self._maps) >= MAX_OPEN_FILES:
                self._maps.clear()  # each map holds a file descriptor: stay far below the process limit
            self._maps[path] = src
        return src

    def _fill(self, rows: list[tuple[str, int, np.ndarray]]) -> None:
        """Fill each (path, first item, out) row: local files from their memory map, remote ones concurrently."""
        remote = []
        for path, start, out in rows:
            src = self._source(path, out.dtype)
            if isinstance(src, str):
                remote.append((path, start, out))
                continue
            chunk = src[start : start + len(out)]
            if len(chunk) != len(out):
                raise DataError(
                    f"{path}: ends before item {start + len(out)}; the file changed after it was opened"
                )
            out[:] = chunk
        if remote:
            data = read_ranges([(path, start * out.itemsize, out.nbytes) for path, start, out in remote])
            for (_, _, out), raw in zip(remote, data, strict=True):
                out[:] = np.frombuffer(raw, out.dtype)

    def read_batch(self, indices: list[int] | np.ndarray) -> dict[str, Any]:
        """Instances as one batch of numpy arrays: input_ids [B,T] in the file dtype, label_mask [B,T],
        instance_mask [B], index [B], metadata, and attention_mask / doc_lens when configured."""
        index = np.asarray(indices, dtype=np.int64).reshape(-1)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"instance ids {index.tolist()} are out of range for {len(self)} instances")
        file_no = np.searchsorted(self.offsets, index, side="right") - 1
        starts = (index - self.offsets[file_no]) * self.seq_len
        tokens = np.empty((len(index), self.seq_len), dtype=self.dtype)
        label_mask = np.ones((len(index), self.seq_len), dtype=np.bool_)
        rows = []
        for row, (k, start) in enumerate(zip(file_no.tolist(), starts.tolist(), strict=True)):
            f = self.files[k]
            rows.append((f.path, start, tokens[row]))
            if f.label_mask_path is not None:
                rows.append((f.label_mask_path, start, label_mask[row]))
        self._fill(rows)
        if self.vocab_size is not None and tokens.size and tokens.max() >= self.vocab_size:
            row = int(np.argmax((tokens >= self.vocab_size).any(axis=1)))
            check_vocab(tokens[row], self.vocab_size, self.files[file_no[row]].path, int(starts[row]))
        batch: dict[str, Any] = {
            "input_ids": tokens,
            "label_mask": label_mask,
            "instance_mask": np.ones(len(index), dtype=np.bool_),
            "index": index,
            "metadata": [dict(self.files[k].metadata) for k in file_no.tolist()],
        }
        if self.instance_filter is not None:
            batch["instance_mask"] = np.array(
                [keep_instance(t, self.instance_filter) for t in tokens], dtype=np.bool_
            )
        if self.generate_attention_mask:
            batch["attention_mask"] = tokens != self.pad_token_id
        if self.generate_doc_lengths:
            lens = [document_lengths(t, self.eos_token_id) for t in tokens]
            batch["doc_lens"] = np.zeros((len(lens), max(map(len, lens), default=0)), dtype=np.int64)
            for row, doc_lens in enumerate(lens):
                batch["doc_lens"][row, : len(doc_lens)] = doc_lens
            batch["max_doc_lens"] = [int(d.max()) for d in lens]
        return batch

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One instance as tensors: input_ids (int64), index, metadata and the configured masks."""
        batch = self.read_batch([int(index)])
        k, _ = self.locate(int(index))
        item: dict[str, Any] = {
            "input_ids": torch.from_numpy(batch["input_ids"][0].astype(np.int64)),
            "index": int(index),
            "metadata": batch["metadata"][0],
        }
        if self.files[k].label_mask_path is not None:
            item["label_mask"] = torch.from_numpy(batch["label_mask"][0])
        if self.instance_filter is not None:
            item["instance_mask"] = bool(batch["instance_mask"][0])
        if self.generate_attention_mask:
            item["attention_mask"] = torch.from_numpy(batch["attention_mask"][0])
        if self.generate_doc_lengths:
            item["doc_lens"] = torch.from_numpy(batch["doc_lens"][0])
        return item

    def close(self) -> None:
        """Drop the memory maps this process opened."""
        self._maps.clear()


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


def build_token_dataset(
    cfg: DataConfig,
    *,
    seq_len: int,
    vocab_size: int | None = None,
    pad_token_id: int | None = None,
    eos_token_id: int | None = None,
) -> TokenDataset:
    """The token dataset a DataConfig describes (paths, or named groups in sorted label order)."""
    dtype = token_dtype(cfg.memmap_dtype)
    if cfg.datasets:
        if cfg.paths:
            raise ConfigError("data.paths and data.datasets are both set; use one of them")
        if cfg.label_mask_paths:
            raise ConfigError("data.label_mask_paths goes with data.paths, not with data.datasets")
        labels = sorted(cfg.datasets)
        paths = [p for label in labels for p in cfg.datasets[label]]
        metadata = [{"label": label} for label in labels for _ in cfg.datasets[label]]
    else:
        paths, metadata = list(cfg.paths), None
    files = describe_token_files(
        paths, dtype, label_mask_paths=cfg.label_mask_paths, metadata=metadata, vocab_size=vocab_size
    )
    return TokenDataset(
        files,
        seq_len,
        dtype,
        vocab_size=vocab_size,
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
        generate_attention_mask=cfg.generate_attention_mask,
        generate_doc_lengths=cfg.generate_doc_lengths,
        instance_filter=cfg.instance_filter,
    )
