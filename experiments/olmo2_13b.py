"""OLMo-2 13B, stage 1: OLMo-2 7B's settings with a 2048-instance global batch (8M tokens per step)."""

from dataclasses import replace

from olmo2_7b import config as olmo2_7b_config

from olmo_fn.config import TrainConfig
from olmo_fn.launch import main
from olmo_fn.model.presets import olmo2_13b


def config() -> TrainConfig:
    base = olmo2_7b_config()
    return replace(
        base,
        run_name="OLMo-2-13B",
        save_folder="runs/OLMo-2-13B",
        global_train_batch_size=2048,
        model=olmo2_13b(),
    )


if __name__ == "__main__":
    main(config(), __doc__)
