"""OLMo-2 1B (0425), stage 1: 4T tokens, learning rate 4e-4, 512-instance global batch (2M tokens per step)."""

from dataclasses import replace

from olmo2_7b import config as olmo2_7b_config

from olmo_fn.config import TrainConfig
from olmo_fn.launch import main
from olmo_fn.model.presets import olmo2_1b


def config() -> TrainConfig:
    base = olmo2_7b_config()
    return replace(
        base,
        run_name="OLMo-2-1B",
        save_folder="runs/OLMo-2-1B",
        max_duration="4e12T",
        global_train_batch_size=512,
        device_train_microbatch_size=4,
        model=olmo2_1b(),
        optimizer=replace(base.optimizer, learning_rate=4e-4),
    )


if __name__ == "__main__":
    main(config(), __doc__)
