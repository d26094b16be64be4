"""Convert any checkpoint olmo_fn reads (native, sharded, original OLMo, HF) to a transformers folder."""

from __future__ import annotations

from olmo_fn.checkpoint import storage
from olmo_fn.checkpoint.hf_dir import write_hf_dir
from olmo_fn.checkpoint.load import read_model_state
from olmo_fn.launch import run_tool


def main(
    input_dir: str, output_dir: str, tokenizer_json_path: str | None = None, overwrite: bool = False
) -> None:
    """Write OlmoForCausalLM (OLMo 1 shapes) or Olmo2ForCausalLM (OLMo 2 shapes) files to output_dir.

    The folder appears only once complete (written under a temporary name first).

    Args:
        input_dir: Checkpoint folder or URL: olmo_fn unsharded/sharded, original OLMo, or Hugging Face.
        output_dir: Folder (or URL) to create with config.json, model.safetensors and the tokenizer.
        tokenizer_json_path: A tokenizers JSON file; saved as the folder's tokenizer with the model's eos/pad.
        overwrite: Replace an existing output_dir.
    """
    storage.check_output(output_dir, overwrite, reads=[input_dir, tokenizer_json_path])
    state, cfg = read_model_state(input_dir)
    storage.write_then_publish(
        output_dir, lambda folder: write_hf_dir(folder, state, cfg, tokenizer_json_path)
    )
    print(f"wrote {output_dir} ({cfg.family}, {len(state)} tensors)")


if __name__ == "__main__":
    run_tool(main)
