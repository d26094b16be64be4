"""OLMo-7B-Twin-2T: OLMo-7B's settings, trained on another cluster (the original's twin run)."""

from dataclasses import replace
from pathlib import Path

from olmo_fn.config import TrainConfig
from olmo_fn.launch import main
from olmo_fn.recipes import load_recipe

olmo_7b = load_recipe(Path(__file__).with_name("olmo_7b.py"))


def config() -> TrainConfig:
    return replace(olmo_7b.config(), run_name="OLMo-7B-Twin-2T", save_folder="runs/OLMo-7B-Twin-2T")


if __name__ == "__main__":
    main(config(), __doc__)
