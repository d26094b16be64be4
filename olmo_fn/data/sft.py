"""Supervised fine-tuning data: Tulu-format chats -> input_ids.npy and label_mask.npy (reference §10).

Each example is [EOS] + for every message "<|role|>\\n" then its content; an assistant's content is
content.strip() + EOS + "\\n" and is the only thing labelled (its EOS included, the trailing "\\n" not);
other messages are content.strip() + "\\n". Examples are cut or padded (pad id, no label) to seq_len, and
examples left without any label are dropped. One example is one instance of seq_len tokens.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from tokenizers import Tokenizer
from tqdm import tqdm

from olmo_fn.data.prepare import (
    atomic_file,
    batched,
    dtype_for_vocab,
    ensure_empty_output,
    expand_inputs,
    file_sha256,
    iter_records,
    load_tokenizer,
    save_text,
    special_token_id,
)
from olmo_fn.errors import DataError

if TYPE_CHECKING:
    from olmo_fn.checkpoint.storage import AtomicFile


def _segments(messages: list[dict[str, Any]], eos_token: str) -> list[tuple[str, bool]]:
    """(text, is_assistant_content) pieces of a chat in order."""
    pieces: list[tuple[str, bool]] = []
    for msg in messages:
        pieces.append((f"<|{msg['role']}|>\n", False))
        if msg["role"] == "assistant":
            pieces.append((msg["content"].strip() + eos_token + "\n", True))
        else:
            pieces.append((msg["content"].strip() + "\n", False))
    return pieces


def sft_examples(
    chats: list[list[dict[str, Any]]],
    tokenizer: Tokenizer,
    *,
    seq_len: int,
    eos_token_id: int,
    pad_token_id: int,
) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """(input_ids, label_mask) of seq_len for each chat, or None for a chat with no label left."""
    eos_token = tokenizer.id_to_token(eos_token_id)
    pieces = [_segments(chat, eos_token) for chat in chats]
    flat = [text for chat in pieces for text, _ in chat]
    encoded = iter(tokenizer.encode_batch(flat, add_special_tokens=False))
    out: list[tuple[np.ndarray, np.ndarray] | None] = []
    for chat in pieces:
        ids, mask = [eos_token_id], [False]
        for _, labelled in chat:
            tokens = next(encoded).ids
            ids += tokens
            mask += [labelled] * len(tokens)
            if labelled:
                if len(tokens) < 2 or tokens[-2] != eos_token_id:
                    raise DataError(
                        f"the tokenizer does not encode {eos_token!r} as the EOS id {eos_token_id} inside text; "
                        "pass the id of the tokenizer's end-of-text special token"
                    )
                mask[-1] = False  # the trailing newline is not a label
        ids, mask = ids[:seq_len], mask[:seq_len]
        pad = seq_len - len(ids)
        ids_arr = np.array(ids + [pad_token_id] * pad, dtype=np.int64)
        mask_arr = np.array(mask + [False] * pad, dtype=np.bool_)
        out.append((ids_arr, mask_arr) if mask_arr.any() else None)
    return out


def _check_chat(record: dict[str, Any], path: str, i: int, field: str) -> list[dict[str, Any]]:
    chat = record.get(field)
    if not isinstance(chat, list) or not all(
        isinstance(m, dict) and {"role", "content"} <= m.keys() for m in chat
    ):
        raise DataError(
            f"{path}: record {i} has no {field!r} list of {{role, content}} messages (Tulu format)"
        )
    return chat


def _write_examples(
    batches: Iterable[list[list[dict[str, Any]]]],
    tokenizer: Tokenizer,
    ids_file: AtomicFile,
    mask_file: AtomicFile,
    seq_len: int,
    eos_id: int,
    pad_id: int,
    bar: tqdm,
) -> tuple[int, int, int]:
    """Append the examples of each batch of chats to the two files; (kept, dropped, label tokens)."""
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    dtype = dtype_for_vocab(vocab_size)
    kept = dropped = labels = 0
    for batch in batches:
        for example in sft_examples(
            batch, tokenizer, seq_len=seq_len, eos_token_id=eos_id, pad_token_id=pad_id
        ):
            if example is None:
                dropped += 1
                continue
            ids, mask = example
            if ids.max() >= vocab_size:  # full check of every id written
                raise DataError(f"token id {int(ids.max())} is not below the vocab size {vocab_size}")
            ids_file.write(ids.astype(dtype).tobytes())
            mask_file.write(mask.tobytes())
            kept, labels = kept + 1, labels + int(mask.sum())
        bar.update(len(batch))
    return kept, dropped, labels


def prepare_sft_data(
    inputs: list[str],
    tokenizer_path: str,
    out_dir: str,
    *,
    seq_len: int = 2048,
    eos_token: str = "<|endoftext|>",
    pad_token: str = "<|padding|>",
    messages_field: str = "messages",
    split: str = "train",
    batch_size: int = 256,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Chats -> {out_dir}/input_ids.npy, label_mask.npy and manifest.json; returns the manifest."""
    tokenizer = load_tokenizer(tokenizer_path)
    eos_id = special_token_id(tokenizer, eos_token, "eos")
    pad_id = special_token_id(tokenizer, pad_token, "pad")
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    paths = expand_inputs(inputs)
    ensure_empty_output(out_dir, ["input_ids.npy", "label_mask.npy", "manifest.json"], overwrite)
    chats = (
        _check_chat(rec, p, i, messages_field) for p in paths for i, rec in enumerate(iter_records(p, split))
    )
    out = out_dir.rstrip("/")
    ids_file, mask_file = atomic_file(f"{out}/input_ids.npy"), atomic_file(f"{out}/label_mask.npy")
    try:
        with tqdm(desc="sft examples", unit=" ex", disable=not progress) as bar:
            kept, dropped, labels = _write_examples(
                batched(chats, batch_size), tokenizer, ids_file, mask_file, seq_len, eos_id, pad_id, bar
            )
        if not kept:
            raise DataError(f"no example with a label in {', '.join(inputs)}; check the inputs and --seq-len")
        ids_file.commit()
        mask_file.commit()
    except BaseException:
        ids_file.abort()
        mask_file.abort()
        raise
    manifest = {
        "examples": kept,
        "dropped_without_labels": dropped,
        "seq_len": seq_len,
        "tokens": kept * seq_len,
        "label_tokens": labels,
        "dtype": dtype_for_vocab(vocab_size).name,
        "vocab_size": vocab_size,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "tokenizer": tokenizer_path,
        "tokenizer_sha256": file_sha256(tokenizer_path),
        "inputs": paths,
    }
    save_text(f"{out}/manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest
