"""OLMo-7B-0724: 0424's settings (the original's two configs are byte-identical), in its own run folder."""

from dataclasses import replace
from pathlib import Path

from olmo_fn.config import TrainConfig
from olmo_fn.launch import main
from olmo_fn.recipes import load_recipe

olmo_7b_0424 = load_recipe(Path(__file__).with_name("olmo_7b_0424.py"))


def config() -> TrainConfig:
    return replace(olmo_7b_0424.config(), run_name="OLMo-7B-0724", save_folder="runs/OLMo-7B-0724")


if __name__ == "__main__":
    main(config(), __doc__)
