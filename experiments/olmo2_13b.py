"""OLMo-2 13B, stage 1: OLMo-2 7B's settings with a 2048-instance global batch (8M tokens per step)."""

from dataclasses import replace
from pathlib import Path

from olmo_fn.config import TrainConfig
from olmo_fn.launch import main
from olmo_fn.model.presets import olmo2_13b
from olmo_fn.recipes import load_recipe

olmo2_7b = load_recipe(Path(__file__).with_name("olmo2_7b.py"))


def config() -> TrainConfig:
    # z-loss as in OLMo-2 7B: the YAML's 1e-5, with the original trainer's built-in 1e-4 applied (original_trainer)
    return replace(
        olmo2_7b.config(),
        run_name="OLMo-2-13B",
        save_folder="runs/OLMo-2-13B",
        global_train_batch_size=2048,
        model=olmo2_13b(),
        optimizer=replace(olmo2_7b.config().optimizer, skip_spikes=False),  # OLMo-core's OLMo2-13B.py: AdamW
    )


if __name__ == "__main__":
    main(config(), __doc__)
