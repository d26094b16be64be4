"""OLMo-7B-Twin-2T: OLMo-7B's settings, trained on another cluster (the original's twin run)."""

from dataclasses import replace

from olmo_7b import config as olmo_7b_config

from olmo_fn.config import TrainConfig
from olmo_fn.launch import main


def config() -> TrainConfig:
    return replace(olmo_7b_config(), run_name="OLMo-7B-Twin-2T", save_folder="runs/OLMo-7B-Twin-2T")


if __name__ == "__main__":
    main(config(), __doc__)
