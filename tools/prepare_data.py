"""Tokenise documents into the original OLMo's raw token files (EOS after every document), with a manifest.

Examples:
    python tools/prepare_data.py --inputs corpus/ --tokenizer tok.json --out-dir data/mine
    python tools/prepare_data.py --inputs a.jsonl b.parquet --tokenizer tok.json --train-vocab-size 8192 \\
        --out-dir data/mine          # trains a byte-level BPE tokenizer on the inputs first, saved to tok.json
"""

from __future__ import annotations

import sys
from typing import Literal

import fsspec

from olmo_fn.data.prepare import (
    DEFAULT_SPECIAL_TOKENS,
    expand_inputs,
    iter_documents,
    prepare_token_files,
    save_text,
    train_bpe_tokenizer,
)
from olmo_fn.errors import ConfigError
from olmo_fn.launch import run_tool


def file_exists(path: str) -> bool:
    """Whether a local path or URL exists."""
    fs, stripped = fsspec.core.url_to_fs(path)
    return fs.exists(stripped)


def prepare_data(
    inputs: list[str],
    tokenizer: str,
    out_dir: str,
    train_vocab_size: int | None = None,
    eos_token: str = "<|endoftext|>",
    text_field: str = "text",
    text_unit: Literal["file", "paragraph", "line"] = "file",
    split: str = "train",
    max_tokens_per_file: int = 1 << 29,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Tokenise text, JSON-lines, parquet or saved `datasets` inputs into token files and manifest.json.

    Args:
        inputs: Input files or directories (local paths or fsspec URLs): .txt/.md, .jsonl/.json (also .gz),
            .parquet, or a directory written by `datasets` save_to_disk.
        tokenizer: The tokenizers JSON to use (or to write, with --train-vocab-size).
        out_dir: Output directory: part-00000.npy, ... (uint16 when the vocabulary fits, else uint32).
        train_vocab_size: Train a byte-level BPE tokenizer of this size on the inputs first and save it
            to --tokenizer; its special tokens <|endoftext|> and <|padding|> get ids 0 and 1.
        eos_token: End-of-text token (string or id) appended to every document.
        text_field: Field holding the text in JSON-lines, parquet and `datasets` records.
        text_unit: A document in a text file: the whole 'file', each blank-line-separated 'paragraph',
            or each 'line'.
        split: Split to read from a saved DatasetDict.
        max_tokens_per_file: Start a new output file past this many tokens (documents are not split).
        overwrite: Replace the outputs of an earlier preparation in out_dir.
        progress: Show progress: the documents read (and, with --train-vocab-size, the tokenizer's stages).
    """
    if train_vocab_size is not None:
        if file_exists(tokenizer) and not overwrite:
            raise ConfigError(
                f"{tokenizer} already exists; pass --overwrite to replace it with a new tokenizer"
            )
        if train_vocab_size <= len(DEFAULT_SPECIAL_TOKENS) + 256:
            raise ConfigError(f"--train-vocab-size {train_vocab_size} is too small; use at least 512")
        paths = expand_inputs(inputs)
        docs = (
            d
            for p in paths
            for d in iter_documents(p, text_field=text_field, text_unit=text_unit, split=split)
        )
        tok = train_bpe_tokenizer(docs, train_vocab_size, progress=progress)
        save_text(tokenizer, tok.to_str(pretty=True))
        print(f"trained a BPE tokenizer of {tok.get_vocab_size()} tokens -> {tokenizer}", file=sys.stderr)
    manifest = prepare_token_files(
        inputs,
        tokenizer,
        out_dir,
        eos_token=eos_token,
        text_field=text_field,
        text_unit=text_unit,
        split=split,
        max_tokens_per_file=max_tokens_per_file,
        overwrite=overwrite,
        progress=progress,
    )
    print(
        f"{manifest['documents']} documents, {manifest['tokens']} tokens ({manifest['dtype']}) "
        f"in {len(manifest['files'])} file(s) -> {out_dir}"
    )
    return manifest


if __name__ == "__main__":
    run_tool(prepare_data)
