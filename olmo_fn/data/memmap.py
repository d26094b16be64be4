"""Token datasets over the original OLMo's raw token files, read by byte range from local paths or fsspec URLs.

A token file is a headerless array of token ids (named `.npy` by convention, but with no numpy header).
Instance i of a file is tokens [i*seq_len, (i+1)*seq_len); each file's tail shorter than seq_len is dropped.
Instances of all files are numbered in path order (for named groups: groups in sorted label order).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from olmo_fn.config import DataConfig, InstanceFilterConfig
from olmo_fn.data.files import (
    MAX_OPEN_FILES,
    TokenFile,
    check_vocab,
    describe_token_files,
    local_file_path,
    read_ranges,
    token_dtype,
)
from olmo_fn.data.instances import all_true, keep_instance
from olmo_fn.errors import ConfigError, DataError, OlmoFnError


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
        instance_filter: InstanceFilterConfig | None = None,
    ):
        if seq_len <= 0:
            raise ConfigError(f"model.max_sequence_length must be positive, got {seq_len}")
        if generate_attention_mask and pad_token_id is None:
            raise ConfigError("data.generate_attention_mask needs the model's pad_token_id")
        self.files = files
        self.seq_len = seq_len
        self.dtype = np.dtype(dtype)
        self.vocab_size = vocab_size
        self.pad_token_id = pad_token_id
        self.eos_token_id = eos_token_id
        self.generate_attention_mask = generate_attention_mask
        self.instance_filter = instance_filter
        counts = np.array([f.num_tokens // seq_len for f in files], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])  # instance id range of file k: [o[k], o[k+1])
        self._size = int(self.offsets[-1])
        self._metadata = [dict(f.metadata) for f in files]  # each batch row gets a copy
        self._masked = [f.label_mask_path is not None for f in files]
        self._all_local: bool | None = None  # every file memory-mapped (known at the first read)
        self._maps: dict[str, np.ndarray | str] = {}

    def __len__(self) -> int:
        return self._size

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": {}}  # maps are reopened in each worker process

    def locate(self, index: int) -> tuple[int, int]:
        """(file number, instance number within that file) of a global instance id."""
        if not 0 <= index < len(self):
            raise IndexError(f"instance {index} is out of range for a dataset of {len(self)} instances")
        k = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return k, index - int(self.offsets[k])

    def _source(self, path: str, dtype: np.dtype) -> np.ndarray | str:
        """A read-only memory map of a local file as rows of seq_len items (pages are read on demand),
        or the URL of a remote one."""
        src = self._maps.get(path)
        if src is None:
            local = local_file_path(path)
            try:
                if local is None:
                    src = path
                else:
                    flat = np.memmap(local, dtype=dtype, mode="r").view(np.ndarray)
                    rows = len(flat) // self.seq_len  # a tail shorter than seq_len is never read
                    src = flat[: rows * self.seq_len].reshape(rows, self.seq_len)
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
            chunk = src.reshape(-1)[start : start + len(out)]
            if len(chunk) != len(out):
                raise DataError(
                    f"{path}: ends before item {start + len(out)}; the file changed after it was opened"
                )
            out[:] = chunk
        if remote:
            data = read_ranges([(path, start * out.itemsize, out.nbytes) for path, start, out in remote])
            for (_, _, out), raw in zip(remote, data, strict=True):
                out[:] = np.frombuffer(raw, out.dtype)

    def _read_rows(self, file_no: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, label mask) of instances given by file number and first token, one request per row."""
        tokens = np.empty((len(file_no), self.seq_len), dtype=self.dtype)
        label_mask = all_true((len(file_no), self.seq_len))
        rows = []
        for row, (k, start) in enumerate(zip(file_no.tolist(), starts.tolist(), strict=True)):
            f = self.files[k]
            rows.append((f.path, start, tokens[row]))
            if f.label_mask_path is not None:
                rows.append((f.label_mask_path, start, label_mask[row]))
        self._fill(rows)
        return tokens, label_mask

    def _gather(self, file_no: list[int] | None, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, label mask) of local instances copied from the memory maps' rows (IndexError if a file
        is shorter than when it was described). file_no None: all from file 0."""
        files, seq_len = self.files, self.seq_len
        if file_no is None or file_no.count(file_no[0]) == len(file_no):  # one file: one fancy-index copy
            k = 0 if file_no is None else file_no[0]
            tokens = self._source(files[k].path, self.dtype)[local]
            if self._masked[k]:
                return tokens, self._source(files[k].label_mask_path, np.dtype(np.bool_))[local]
            return tokens, all_true((len(local), seq_len))
        tokens = np.empty((len(file_no), seq_len), dtype=self.dtype)
        label_mask = all_true((len(file_no), seq_len))
        masked, source, dtype = self._masked, self._source, self.dtype
        for row, (k, i) in enumerate(zip(file_no, local.tolist(), strict=True)):
            tokens[row] = source(files[k].path, dtype)[i]
            if masked[k]:
                label_mask[row] = source(files[k].label_mask_path, np.dtype(np.bool_))[i]
        return tokens, label_mask

    def read_batch(self, indices: list[int] | np.ndarray) -> dict[str, Any]:
        """Instances as one batch of numpy arrays: input_ids [B,T] in the file dtype, label_mask [B,T],
        instance_mask [B], index [B], metadata, and attention_mask when configured."""
        index = np.asarray(indices, dtype=np.int64).reshape(-1)
        ids = index.tolist()
        if ids and (min(ids) < 0 or max(ids) >= self._size):
            raise IndexError(f"instance ids {ids} are out of range for {self._size} instances")
        if len(self.files) == 1:
            file_no, local = None, index
        else:
            file_no = np.searchsorted(self.offsets, index, side="right") - 1
            local = index - self.offsets[file_no]
        file_list = None if file_no is None else file_no.tolist()
        tokens = None
        if ids and self._all_local is None:
            paths = [p for f in self.files for p in (f.path, f.label_mask_path) if p is not None]
            self._all_local = all(local_file_path(p) is not None for p in paths)
        if self._all_local and ids:  # whole rows straight from the memory maps, no per-row requests
            try:
                tokens, label_mask = self._gather(file_list, local)
            except IndexError:  # a file shrank since it was described: the row-wise read names it
                tokens = None
        if tokens is None:
            if file_no is None:
                file_no = np.zeros(len(index), dtype=np.int64)
            tokens, label_mask = self._read_rows(file_no, local * self.seq_len)
        if self.vocab_size is not None and tokens.size and tokens.max() >= self.vocab_size:
            row = int(np.argmax((tokens >= self.vocab_size).any(axis=1)))
            k = 0 if file_no is None else int(file_no[row])
            check_vocab(tokens[row], self.vocab_size, self.files[k].path, int(local[row]) * self.seq_len)
        metadata = self._metadata
        if file_list is None:
            meta = metadata[0]
            metadata_rows = [meta.copy() for _ in ids]
        else:
            metadata_rows = [metadata[k].copy() for k in file_list]
        batch: dict[str, Any] = {
            "input_ids": tokens,
            "label_mask": label_mask,
            "instance_mask": all_true(len(index)),
            "index": index,
            "metadata": metadata_rows,
        }
        if self.instance_filter is not None:
            batch["instance_mask"] = np.array(
                [keep_instance(t, self.instance_filter) for t in tokens], dtype=np.bool_
            )
        if self.generate_attention_mask:
            batch["attention_mask"] = tokens != self.pad_token_id
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
        return item

    def close(self) -> None:
        """Drop the memory maps this process opened."""
        self._maps.clear()


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
    given = [name for name in ("paths", "paths_file", "datasets") if getattr(cfg, name)]
    if len(given) > 1:
        raise ConfigError(f"data.{given[0]} and data.{given[1]} are both set; use one of them")
    if cfg.datasets:
        if cfg.label_mask_paths:
            raise ConfigError("data.label_mask_paths goes with data.paths, not with data.datasets")
        labels = sorted(cfg.datasets)
        paths = [p for label in labels for p in cfg.datasets[label]]
        metadata = [{"label": label} for label in labels for _ in cfg.datasets[label]]
    else:
        paths, metadata = train_paths(cfg), None
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
        instance_filter=cfg.instance_filter,
    )


def train_paths(cfg: DataConfig) -> list[str]:
    """data.paths, or the entries of data.paths_file in order."""
    return read_paths_file(cfg.paths_file) if cfg.paths_file else list(cfg.paths)


def read_paths_file(url: str) -> list[str]:
    """The token files a list file names, one per line in order; # comments and blank lines are skipped and
    relative entries are taken relative to the list's own folder."""
    from olmo_fn.checkpoint import storage

    try:
        text = storage.read_bytes(url).decode()
    except (OSError, ValueError, OlmoFnError) as e:
        raise ConfigError(f"data.paths_file: cannot read {url}: {e}") from e
    base = url.rsplit("/", 1)[0] if "/" in url else "."
    entries = [line.strip() for line in text.splitlines()]
    entries = [e for e in entries if e and not e.startswith("#")]
    if not entries:
        raise ConfigError(f"data.paths_file: {url} lists no token file; write one path or URL per line")
    return [e if "://" in e or e.startswith("/") else f"{base}/{e}" for e in entries]
