"""Test helpers that write an olmo_fn checkpoint out again as an original OLMo folder (model.pt, optim.pt with
integer parameter ids in the original's registration order, train.pt) and as a Hugging Face folder; the
load benchmark's writers, which make the same folders."""

from __future__ import annotations

from pathlib import Path

from olmo_fn.benchmarks import load as bench
from olmo_fn.checkpoint.hf_dir import write_hf_dir
from olmo_fn.checkpoint.load import model_config_of_checkpoint


def write_original_dir(native: str, out: Path, trainer_state: dict) -> None:
    """An original OLMo unsharded folder holding what the native checkpoint holds."""
    bench.write_original_dir(native, str(out), model_config_of_checkpoint(native), trainer_state)


def write_hf(native: str, out: Path) -> None:
    """A Hugging Face folder of the native checkpoint's weights (no optimizer, no trainer state)."""
    write_hf_dir(str(out), bench.split_state(native)[0], model_config_of_checkpoint(native))
