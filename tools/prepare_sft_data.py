"""Chat data in Tulu format (`messages` of role/content) -> input_ids.npy and label_mask.npy for fine-tuning.

Example:
    python tools/prepare_sft_data.py --inputs tulu.jsonl --tokenizer tok.json --out-dir data/sft --seq-len 2048
Then train with data.paths=[data/sft/input_ids.npy], data.label_mask_paths=[data/sft/label_mask.npy] and
model.max_sequence_length equal to --seq-len (one instance = one example).
"""

from __future__ import annotations

from olmo_fn.data.sft import prepare_sft_data as _prepare
from olmo_fn.launch import run_tool


def prepare_sft_data(
    inputs: list[str],
    tokenizer: str,
    out_dir: str,
    seq_len: int = 2048,
    eos_token: str = "<|endoftext|>",
    pad_token: str = "<|padding|>",
    messages_field: str = "messages",
    split: str = "train",
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Tokenise chats as the original's Tulu preparation does: only assistant replies (and their EOS) are labels.

    Args:
        inputs: JSON-lines or parquet files, or directories written by `datasets` save_to_disk
            (local paths or fsspec URLs); each record has a list of {role, content} messages.
        tokenizer: The tokenizers JSON to use.
        out_dir: Output directory for input_ids.npy, label_mask.npy and manifest.json.
        seq_len: Length of every example: longer ones are cut, shorter ones padded (padding is no label).
        eos_token: End-of-text token (string or id): starts every example and ends every assistant reply.
        pad_token: Padding token (string or id).
        messages_field: Field holding the messages.
        split: Split to read from a saved DatasetDict.
        overwrite: Replace the outputs of an earlier preparation in out_dir.
        progress: Show a progress bar.
    """
    manifest = _prepare(
        inputs,
        tokenizer,
        out_dir,
        seq_len=seq_len,
        eos_token=eos_token,
        pad_token=pad_token,
        messages_field=messages_field,
        split=split,
        overwrite=overwrite,
        progress=progress,
    )
    print(
        f"{manifest['examples']} examples of {seq_len} tokens ({manifest['label_tokens']} labels, "
        f"{manifest['dropped_without_labels']} dropped without labels) -> {out_dir}"
    )
    return manifest


if __name__ == "__main__":
    run_tool(prepare_sft_data)
