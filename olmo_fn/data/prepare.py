"""Preparation: documents -> the original OLMo's raw token files (EOS after every document), and BPE training.

Inputs are text files, JSON-lines, parquet files or datasets saved with `datasets` (save_to_disk), given as
paths or fsspec URLs. Outputs are written to a temporary name and renamed, so nothing is left half-written.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal

import fsspec
import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from tqdm import tqdm

from olmo_fn.errors import ConfigError, DataError

if TYPE_CHECKING:
    from olmo_fn.checkpoint.storage import AtomicFile

TextUnit = Literal["file", "paragraph", "line"]
TEXT_SUFFIXES = (".txt", ".md", ".text")
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
ALL_SUFFIXES = TEXT_SUFFIXES + JSON_SUFFIXES + (".parquet",)
DEFAULT_SPECIAL_TOKENS = ("<|endoftext|>", "<|padding|>")


def _strip_compression(path: str) -> str:
    for ext in (".gz", ".zst", ".bz2", ".xz"):
        if path.endswith(ext):
            return path[: -len(ext)]
    return path


def _is_saved_dataset(fs: fsspec.AbstractFileSystem, path: str) -> bool:
    return any(
        fs.exists(f"{path}/{name}") for name in ("dataset_info.json", "state.json", "dataset_dict.json")
    )


def expand_inputs(inputs: list[str]) -> list[str]:
    """Input paths with each plain directory replaced by its data files, in sorted order."""
    out: list[str] = []
    for path in inputs:
        fs, stripped = fsspec.core.url_to_fs(path)
        if not fs.exists(stripped):
            raise DataError(f"{path}: input not found; check the path")
        if fs.isdir(stripped) and not _is_saved_dataset(fs, stripped):
            found = sorted(p for p in fs.find(stripped) if _strip_compression(p).endswith(ALL_SUFFIXES))
            if not found:
                raise DataError(f"{path}: no {', '.join(ALL_SUFFIXES)} files in this directory")
            out += [fs.unstrip_protocol(p) if "://" in path else p for p in found]
        else:
            out.append(path)
    return out


def iter_records(path: str, split: str = "train") -> Iterator[dict[str, Any]]:
    """Records (dicts) of a JSON-lines file, a parquet file or a dataset saved with `datasets`."""
    fs, stripped = fsspec.core.url_to_fs(path)
    if fs.isdir(stripped):
        import datasets

        data = datasets.load_from_disk(path)
        if isinstance(data, datasets.DatasetDict):
            if split not in data:
                raise DataError(f"{path}: no split {split!r}; it has {', '.join(data)}")
            data = data[split]
        yield from data
    elif _strip_compression(path).endswith(".parquet"):
        import pyarrow.parquet as pq

        with fsspec.open(path, "rb") as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=1024):
                yield from batch.to_pylist()
    elif _strip_compression(path).endswith(JSON_SUFFIXES):
        with fsspec.open(path, "rt", encoding="utf-8", compression="infer") as f:
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as e:
                        raise DataError(
                            f"{path}: line {line_no} is not JSON ({e.msg}); expected JSON lines"
                        ) from e
    else:
        raise DataError(
            f"{path}: unknown input type; use {', '.join(ALL_SUFFIXES)} or a saved dataset directory"
        )


def iter_documents(
    path: str, *, text_field: str = "text", text_unit: TextUnit = "file", split: str = "train"
) -> Iterator[str]:
    """The documents of one input: a text file (whole file, paragraphs or lines) or records' text_field."""
    try:
        yield from _documents(path, text_field, text_unit, split)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); convert it to UTF-8") from e


def _documents(path: str, text_field: str, text_unit: TextUnit, split: str) -> Iterator[str]:
    if _strip_compression(path).endswith(TEXT_SUFFIXES):
        with fsspec.open(path, "rt", encoding="utf-8", compression="infer") as f:
            text = f.read()
        if text_unit == "file":
            parts = [text]
        elif text_unit == "paragraph":
            parts = text.split("\n\n")
        else:
            parts = text.splitlines()
        yield from (p for p in parts if p.strip())
        return
    for i, record in enumerate(iter_records(path, split)):
        if text_field not in record:
            raise DataError(f"{path}: record {i} has no field {text_field!r}; pass the right --text-field")
        if record[text_field]:
            yield str(record[text_field])


def file_sha256(path: str) -> str:
    """Hex sha256 of a local or remote file."""
    h = hashlib.sha256()
    with fsspec.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def load_tokenizer(path: str) -> Tokenizer:
    """A `tokenizers` tokenizer from a JSON file (local or fsspec URL)."""
    try:
        with fsspec.open(path, "rt", encoding="utf-8") as f:
            return Tokenizer.from_str(f.read())
    except FileNotFoundError as e:
        raise DataError(f"{path}: tokenizer file not found; give a tokenizers JSON file") from e
    except Exception as e:  # tokenizers raises plain Exceptions on a malformed file
        raise DataError(f"{path}: not a tokenizers JSON file ({e})") from e


def special_token_id(tokenizer: Tokenizer, token: str | int, what: str = "eos") -> int:
    """The id of a special token given as its string or its id, checked against the tokenizer."""
    if isinstance(token, int) or (isinstance(token, str) and token.isdigit()):
        tid = int(token)
        if not 0 <= tid < tokenizer.get_vocab_size(with_added_tokens=True):
            raise ConfigError(f"{what} token id {tid} is outside the tokenizer's vocabulary")
        return tid
    tid = tokenizer.token_to_id(token)
    if tid is None:
        raise ConfigError(f"the tokenizer has no {what} token {token!r}; pass its id or another token")
    return tid


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else uint32 (the original's rule)."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def train_bpe_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    *,
    special_tokens: tuple[str, ...] = DEFAULT_SPECIAL_TOKENS,
    min_frequency: int = 2,
    progress: bool = False,
) -> Tokenizer:
    """A byte-level BPE tokenizer trained on texts; the special tokens take ids 0, 1, ... in order. With
    progress, stderr shows each stage: a bar over the documents read, then the merges' start and end."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,  # its bars redraw one line over ours; the stages below say the same
    )
    start = time.monotonic()
    tokenizer.train_from_iterator(_counted(texts, vocab_size) if progress else texts, trainer)
    if progress:
        print(
            f"tokenizer: {tokenizer.get_vocab_size():,} tokens learned in {time.monotonic() - start:.1f} s",
            file=sys.stderr,
        )
    return tokenizer


def _counted(texts: Iterable[str], vocab_size: int) -> Iterator[str]:
    """texts, counted by a bar on stderr; once read, a line with the counts and the merges' start."""
    documents = characters = 0
    with tqdm(texts, desc="tokenizer: reading documents", unit=" docs", file=sys.stderr) as bar:
        for text in bar:
            documents, characters = documents + 1, characters + len(text)
            yield text
    print(
        f"tokenizer: read {documents:,} documents ({characters:,} characters); "
        f"learning merges up to {vocab_size:,} tokens",
        file=sys.stderr,
    )


def save_text(path: str, text: str) -> None:
    """Write a text file, local or remote, through storage's atomic write (a temporary name and a rename)."""
    from olmo_fn.checkpoint import storage

    storage.write_bytes(path, text.encode("utf-8"))


def atomic_file(path: str) -> AtomicFile:
    """A binary output file published whole by commit() and dropped by abort() (storage.AtomicFile)."""
    from olmo_fn.checkpoint.storage import AtomicFile

    return AtomicFile(path)


def ensure_empty_output(out_dir: str, names: Iterable[str], overwrite: bool) -> fsspec.AbstractFileSystem:
    """Create out_dir; ConfigError if it already holds one of `names` and overwrite is off."""
    fs, stripped = fsspec.core.url_to_fs(out_dir)
    fs.makedirs(stripped, exist_ok=True)
    if not overwrite:
        existing = [n for n in names if fs.exists(f"{stripped}/{n}")]
        existing += [os.path.basename(p) for p in fs.glob(f"{stripped}/part-*.npy")]
        if existing:
            raise ConfigError(
                f"{out_dir} already holds {existing[0]}; pick an empty directory or pass --overwrite"
            )
    return fs


def batched(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    """Lists of up to n consecutive items."""
    it = iter(items)
    while batch := list(itertools.islice(it, n)):
        yield batch


def tokenize_documents(
    documents: Iterable[str],
    tokenizer: Tokenizer,
    out_dir: str,
    *,
    eos_token_id: int,
    prefix: str = "part",
    max_tokens_per_file: int = 1 << 29,
    batch_size: int = 256,
    progress: bool = True,
) -> dict[str, Any]:
    """Tokenise documents (EOS appended to each) into {out_dir}/{prefix}-NNNNN.npy; return their summary."""
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    dtype = dtype_for_vocab(vocab_size)
    files: list[dict[str, Any]] = []
    writer: AtomicFile | None = None
    bar = tqdm(desc=f"tokenising {prefix}", unit=" docs", disable=not progress)
    try:
        for batch in batched(documents, batch_size):
            for enc in tokenizer.encode_batch(
                batch, add_special_tokens=False
            ):  # parallel in tokenizers' threads
                ids = np.array([*enc.ids, eos_token_id], dtype=np.int64)
                if ids.max() >= vocab_size:  # full check of every id written
                    raise DataError(
                        f"token id {int(ids.max())} is not below the tokenizer's vocab size {vocab_size}"
                    )
                if writer is None or (
                    files[-1]["tokens"] and files[-1]["tokens"] + len(ids) > max_tokens_per_file
                ):
                    if writer is not None:
                        writer.commit()
                    path = f"{out_dir.rstrip('/')}/{prefix}-{len(files):05d}.npy"
                    writer = atomic_file(path)
                    files.append({"path": path, "documents": 0, "tokens": 0})
                writer.write(ids.astype(dtype).tobytes())
                files[-1]["documents"] += 1
                files[-1]["tokens"] += len(ids)
            bar.update(len(batch))
        if writer is not None:
            writer.commit()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.close()
    return {
        "documents": sum(f["documents"] for f in files),
        "tokens": sum(f["tokens"] for f in files),
        "dtype": dtype.name,
        "vocab_size": vocab_size,
        "eos_token_id": eos_token_id,
        "files": files,
    }


def prepare_token_files(
    inputs: list[str],
    tokenizer_path: str,
    out_dir: str,
    *,
    eos_token: str = "<|endoftext|>",
    text_field: str = "text",
    text_unit: TextUnit = "file",
    split: str = "train",
    max_tokens_per_file: int = 1 << 29,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Inputs -> token files in out_dir plus manifest.json (documents, tokens, dtype, tokenizer sha256)."""
    tokenizer = load_tokenizer(tokenizer_path)
    eos_id = special_token_id(tokenizer, eos_token)
    paths = expand_inputs(inputs)
    ensure_empty_output(out_dir, ["manifest.json"], overwrite)
    docs = (
        d for p in paths for d in iter_documents(p, text_field=text_field, text_unit=text_unit, split=split)
    )
    summary = tokenize_documents(
        docs,
        tokenizer,
        out_dir,
        eos_token_id=eos_id,
        max_tokens_per_file=max_tokens_per_file,
        progress=progress,
    )
    if not summary["documents"]:
        raise DataError(f"no documents found in {', '.join(inputs)}; check --text-field and the inputs")
    manifest = {
        **summary,
        "tokenizer": tokenizer_path,
        "tokenizer_sha256": file_sha256(tokenizer_path),
        "inputs": paths,
    }
    save_text(f"{out_dir.rstrip('/')}/manifest.json", json.dumps(manifest, indent=2) + "\n")
    remove_stale_parts(out_dir, [f["path"] for f in summary["files"]])
    return manifest


def remove_stale_parts(out_dir: str, keep: list[str]) -> None:
    """Delete part-*.npy files of an earlier, overwritten preparation that this one did not write."""
    fs, stripped = fsspec.core.url_to_fs(out_dir)
    kept = {fsspec.core.url_to_fs(p)[1] for p in keep}
    for path in fs.glob(f"{stripped}/part-*.npy"):
        if path not in kept:
            fs.rm(path)
