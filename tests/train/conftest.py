"""A tiny learnable corpus and a tiny run config for training-loop tests."""

import dataclasses

import numpy as np
import pytest

from olmo_fn.config import (
    DataConfig,
    EvalConfig,
    ModelConfig,
    OptimizerConfig,
    SchedulerConfig,
    TrackingConfig,
    TrainConfig,
)

SEQ = 32
VOCAB = 64


def write_corpus(folder, n_files=2, instances=50, seed=0) -> list[str]:
    """Token files of noisy counting sequences (learnable), uint16, headerless."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n_files):
        start = rng.integers(2, VOCAB, size=instances * SEQ)
        tokens = (start[:1] + np.arange(instances * SEQ)) % (VOCAB - 2) + 2
        noise = rng.random(tokens.shape) < 0.1
        tokens[noise] = rng.integers(2, VOCAB, size=noise.sum())
        path = folder / f"part-{i}.npy"
        tokens.astype(np.uint16).tofile(path)
        paths.append(str(path))
    return paths


def tiny_config(tmp_path, **changes) -> TrainConfig:
    data_dir = tmp_path / "data"
    if not data_dir.exists():
        data_dir.mkdir(parents=True)
        write_corpus(data_dir)
        write_corpus(data_dir / "..", n_files=1, instances=12, seed=9)  # part-0.npy in tmp_path: validation
    model = ModelConfig(d_model=32, n_heads=2, n_layers=2, mlp_hidden_size=128, vocab_size=VOCAB, embedding_size=VOCAB,
                        eos_token_id=0, pad_token_id=1, max_sequence_length=SEQ, layer_norm_type="rms",
                        layer_norm_with_affine=True, attention_layer_norm=True, norm_after=True)  # fmt: skip
    cfg = TrainConfig(
        run_name="test-run",
        seed=1,
        max_duration="8",
        global_train_batch_size=4,
        device_train_microbatch_size=2,
        model=model,
        optimizer=OptimizerConfig(learning_rate=1e-2, eps=1e-8),
        scheduler=SchedulerConfig(name="cosine_with_warmup", t_warmup=2, warmup_min_lr=0.0),
        data=DataConfig(paths=sorted(str(p) for p in data_dir.glob("*.npy"))),
        eval=EvalConfig(datasets={"valid": [str(tmp_path / "part-0.npy")]}, device_eval_batch_size=4),
        save_folder=str(tmp_path / "run"),
        save_interval_unsharded=2,
        eval_interval=4,
        tracking=TrackingConfig(
            aim=False, aim_repo=str(tmp_path / "aim"), system_tracking_interval=None, progress_bar=False
        ),
    )
    return dataclasses.replace(cfg, **changes)


@pytest.fixture
def make_config(tmp_path):
    return lambda **changes: tiny_config(tmp_path, **changes)
