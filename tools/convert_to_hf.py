"""Convert any checkpoint olmo_fn reads (native, sharded, original OLMo, HF) to a transformers folder."""

from __future__ import annotations

from olmo_fn.checkpoint.hf_dir import write_hf_dir
from olmo_fn.checkpoint.load import read_model_state
from olmo_fn.launch import run_tool


def main(input_dir: str, output_dir: str, tokenizer_json_path: str | None = None) -> None:
    """Write OlmoForCausalLM (OLMo 1 shapes) or Olmo2ForCausalLM (OLMo 2 shapes) files to output_dir.

    Args:
        input_dir: Checkpoint folder or URL: olmo_fn unsharded/sharded, original OLMo, or Hugging Face.
        output_dir: Folder (or URL) to write config.json, model.safetensors and the tokenizer to.
        tokenizer_json_path: A tokenizers JSON file; saved as the folder's tokenizer with the model's eos/pad.
    """
    state, cfg = read_model_state(input_dir)
    write_hf_dir(output_dir, state, cfg, tokenizer_json_path)
    print(f"wrote {output_dir} ({cfg.family}, {len(state)} tensors)")


if __name__ == "__main__":
    run_tool(main)
