"""OLMo-family models: configs (presets), math (layers), containers (transformer), init and counting."""

from olmo_fn.model.flops import flops_per_token, num_params
from olmo_fn.model.init import init_weights
from olmo_fn.model.presets import PRESETS
from olmo_fn.model.transformer import Transformer

__all__ = ["PRESETS", "Transformer", "flops_per_token", "init_weights", "num_params"]
