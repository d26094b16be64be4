"""OLMo-2 1B (0425), stage 1: 4T tokens, learning rate 4e-4, 512-instance global batch (2M tokens per step)."""

from dataclasses import replace
from pathlib import Path

from olmo_fn.config import TrainConfig
from olmo_fn.launch import main
from olmo_fn.model.presets import olmo2_1b
from olmo_fn.recipes import load_recipe

olmo2_7b = load_recipe(Path(__file__).with_name("olmo2_7b.py"))


def config() -> TrainConfig:
    base = olmo2_7b.config()
    # z-loss as in OLMo-2 7B: the YAML's 1e-5, with the original trainer's built-in 1e-4 applied (original_trainer)
    return replace(
        base,
        run_name="OLMo-2-1B",
        save_folder="runs/OLMo-2-1B",
        max_duration="4e12T",
        global_train_batch_size=512,
        device_train_microbatch_size=4,
        save_num_checkpoints_to_keep=-1,  # the 1B YAML keeps every sharded checkpoint (7B and 13B: none)
        model=olmo2_1b(),
        optimizer=replace(base.optimizer, learning_rate=4e-4),
    )


if __name__ == "__main__":
    main(config(), __doc__)
