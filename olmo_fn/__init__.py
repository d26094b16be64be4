"""olmo_fn: train, fine-tune, inspect, evaluate and serve OLMo-family language models."""

__version__ = "0.1.0"
