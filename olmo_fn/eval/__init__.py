"""In-loop evaluation."""

from olmo_fn.eval.lm import build_eval_datasets, evaluate_lm

__all__ = ["build_eval_datasets", "evaluate_lm"]
