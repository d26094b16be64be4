"""Parallel degrees, launcher environment and refusals: clear ConfigErrors, no processes needed."""

import pytest
import torch

from olmo_fn.config import ModelConfig, ParallelConfig
from olmo_fn.dist import check_launcher_env
from olmo_fn.errors import ConfigError
from olmo_fn.model import Transformer
from olmo_fn.parallel import check_tp, parallelize, resolve_degrees


def test_degrees_fill_the_world_and_mismatches_name_the_fields():
    assert resolve_degrees(ParallelConfig(), 8) == (1, 8, 1)
    assert resolve_degrees(ParallelConfig(dp_replicate=2, tp=2), 8) == (2, 2, 2)
    with pytest.raises(ConfigError, match=r"dp_replicate 1 x dp_shard 3 x tp 2 .* world size 4"):
        resolve_degrees(ParallelConfig(dp_shard=3, tp=2), 4)
    with pytest.raises(ConfigError, match="world size 1"):
        resolve_degrees(ParallelConfig(tp=2), 1)
    with pytest.raises(ConfigError, match="parallel.tp"):
        resolve_degrees(ParallelConfig(tp=0), 4)


def test_scheduler_tasks_without_torchrun_env_are_refused():
    with pytest.raises(ConfigError, match="SLURM_NTASKS=4.*torchrun"):
        check_launcher_env({"SLURM_NTASKS": "4"})
    with pytest.raises(ConfigError, match="OMPI_COMM_WORLD_SIZE"):
        check_launcher_env({"OMPI_COMM_WORLD_SIZE": "2"})
    check_launcher_env({"SLURM_NTASKS": "4", "RANK": "0", "WORLD_SIZE": "8"})  # torchrun under SLURM
    check_launcher_env({"SLURM_NTASKS": "1"})


def test_tp_refuses_tying_and_uneven_splits():
    with pytest.raises(ConfigError, match="weight_tying"):
        check_tp(ModelConfig(weight_tying=True), 2)
    with pytest.raises(ConfigError, match="n_heads"):
        check_tp(ModelConfig(n_heads=3, d_model=96), 2)


def test_float8_is_refused_on_cpu():
    cfg = ModelConfig(d_model=32, n_heads=2, n_layers=1, vocab_size=64, embedding_size=64, eos_token_id=0)
    with torch.device("meta"):
        model = Transformer(cfg)
    with pytest.raises(ConfigError, match="float8.*CUDA"):
        parallelize(model, ParallelConfig(float8=True), None, device_type="cpu")
