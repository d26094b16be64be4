"""The global order is byte-identical to the files the original OLMo wrote."""

import numpy as np
import pytest

from olmo_fn.config import DataConfig
from olmo_fn.data.memmap import build_token_dataset
from olmo_fn.data.order import (
    batch_indices,
    build_global_indices,
    global_indices_path,
    read_global_indices,
    total_size,
    write_global_indices,
)
from olmo_fn.errors import ConfigError, DataError


def fixture_dataset(original_data):
    paths = [str(original_data / "part-0.npy"), str(original_data / "part-1.npy")]
    return build_token_dataset(DataConfig(paths=paths, drop_last=True), seq_len=64, vocab_size=250)


@pytest.mark.parametrize("epoch", [0, 1])
def test_written_order_is_byte_identical_to_the_original(original_data, tmp_path, epoch):
    dataset = fixture_dataset(original_data)
    assert len(dataset) == 38  # 21 + 17: each file's tail is dropped
    order = build_global_indices(len(dataset), seed=1, epoch=epoch, world_size=1, drop_last=True)
    path = write_global_indices(order, str(tmp_path / "run"))
    assert (
        path == global_indices_path(str(tmp_path / "run")) == f"{tmp_path}/run/train_data/global_indices.npy"
    )
    expected = (original_data / f"global_indices_seed1_ep{epoch}_G4.npy").read_bytes()
    assert (tmp_path / "run" / "train_data" / "global_indices.npy").read_bytes() == expected
    assert read_global_indices(path).tolist() == np.frombuffer(expected, np.uint32).tolist()
    assert not list((tmp_path / "run" / "train_data").glob("*.tmp-*"))


def test_rewriting_replaces_the_order(tmp_path):
    write_global_indices(np.arange(10, dtype=np.uint32), str(tmp_path))
    write_global_indices(np.arange(4, dtype=np.uint32), str(tmp_path))
    assert read_global_indices(global_indices_path(str(tmp_path))).tolist() == [0, 1, 2, 3]


def test_total_size_follows_the_originals_rule():
    assert total_size(38, 1, drop_last=True) == 38
    assert total_size(38, 4, drop_last=True) == 36  # ceil((38 - 4) / 4) * 4
    assert total_size(38, 4, drop_last=False) == 40
    assert total_size(40, 4, drop_last=True) == 40


def test_padding_repeats_the_start_and_drop_last_truncates():
    shuffled = build_global_indices(10, seed=3, world_size=1)
    padded = build_global_indices(10, seed=3, world_size=4, drop_last=False)
    assert padded.dtype == np.uint32 and len(padded) == 12
    assert padded.tolist() == shuffled.tolist() + shuffled[:2].tolist()
    dropped = build_global_indices(10, seed=3, world_size=4, drop_last=True)
    assert dropped.tolist() == shuffled[:8].tolist()
    assert build_global_indices(5, seed=0, shuffle=False).tolist() == [0, 1, 2, 3, 4]
    assert sorted(shuffled.tolist()) == list(range(10))
    assert build_global_indices(10, seed=3, epoch=1).tolist() == build_global_indices(10, seed=4).tolist()


def test_rank_slices_interleave_to_the_global_batch():
    order = np.arange(100, 124, dtype=np.uint32)
    assert batch_indices(order, 1, 8).tolist() == list(range(108, 116))
    ranks = [batch_indices(order, 1, 8, rank=r, world_size=2).tolist() for r in range(2)]
    assert ranks == [[108, 110, 112, 114], [109, 111, 113, 115]]
    with pytest.raises(ConfigError, match="not divisible by world size 3"):
        batch_indices(order, 0, 8, rank=0, world_size=3)


def test_bad_order_file_is_named(tmp_path):
    bad = tmp_path / "global_indices.npy"
    bad.write_bytes(b"\x00" * 7)
    with pytest.raises(DataError, match="global_indices.npy.*not a multiple of 4"):
        read_global_indices(str(bad))
    with pytest.raises(DataError, match="missing.npy: global order file not found"):
        read_global_indices(str(tmp_path / "missing.npy"))
