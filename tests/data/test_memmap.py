"""Token datasets over raw token files: instances, label masks, groups, the instance filter, bad input."""

import os

import numpy as np
import pytest
import torch

from olmo_fn.config import DataConfig, InstanceFilterConfig
from olmo_fn.data.instances import keep_instance, max_repetition_count
from olmo_fn.data.loader import build_train_loader
from olmo_fn.data.memmap import build_token_dataset
from olmo_fn.errors import ConfigError, DataError


def write(path, values, dtype):
    np.asarray(values, dtype=dtype).tofile(path)
    return str(path)


def test_instances_are_consecutive_chunks_and_each_tail_is_dropped(original_data):
    paths = [str(original_data / "part-0.npy"), str(original_data / "part-1.npy")]
    ds = build_token_dataset(DataConfig(paths=paths), seq_len=64, vocab_size=250)
    raw0, raw1 = (np.fromfile(p, dtype=np.uint16) for p in paths)
    assert (len(raw0), len(raw1), len(ds)) == (1353, 1088, 38)
    assert ds[0]["input_ids"].tolist() == raw0[:64].tolist()
    assert ds[20]["input_ids"].tolist() == raw0[20 * 64 : 21 * 64].tolist()  # last full chunk of file 0
    assert ds[21]["input_ids"].tolist() == raw1[:64].tolist()  # file 0's 9-token tail is skipped
    assert ds[37]["input_ids"].tolist() == raw1[16 * 64 : 17 * 64].tolist()
    item = ds[21]
    assert item["input_ids"].dtype == torch.int64 and item["index"] == 21
    assert item["metadata"] == {"path": paths[1]}
    with pytest.raises(IndexError):
        ds[38]


def test_uint32_files_and_file_urls(tmp_path):
    path = write(tmp_path / "big.npy", np.arange(70_000, 70_010), np.uint32)
    ds = build_token_dataset(DataConfig(paths=[f"file://{path}"], memmap_dtype="uint32"), seq_len=4)
    assert len(ds) == 2
    assert ds[1]["input_ids"].tolist() == [70_004, 70_005, 70_006, 70_007]


def test_label_masks_are_read_at_the_same_offsets(tmp_path):
    tokens = write(tmp_path / "ids.npy", np.arange(12), np.uint16)
    mask_values = np.array([i % 3 == 0 for i in range(12)])
    mask = write(tmp_path / "mask.npy", mask_values, np.bool_)
    ds = build_token_dataset(DataConfig(paths=[tokens], label_mask_paths=[mask]), seq_len=5)
    assert len(ds) == 2
    assert ds[1]["label_mask"].tolist() == mask_values[5:10].tolist()
    assert ds[1]["label_mask"].dtype == torch.bool


def test_named_groups_follow_sorted_labels_with_label_metadata(tmp_path):
    a = write(tmp_path / "a.npy", [1] * 8, np.uint16)
    b = write(tmp_path / "b.npy", [2] * 4, np.uint16)
    c = write(tmp_path / "c.npy", [3] * 4, np.uint16)
    ds = build_token_dataset(DataConfig(datasets={"zeta": [a], "alpha": [b, c]}), seq_len=4)
    firsts = [ds[i]["input_ids"][0].item() for i in range(len(ds))]
    assert firsts == [2, 3, 1, 1]
    assert [ds[i]["metadata"] for i in range(4)] == [{"label": "alpha"}] * 2 + [{"label": "zeta"}] * 2


def test_attention_mask(tmp_path):
    path = write(tmp_path / "ids.npy", [5, 6, 0, 7, 1, 1, 0, 8], np.uint16)
    cfg = DataConfig(paths=[path], generate_attention_mask=True)
    item = build_token_dataset(cfg, seq_len=8, pad_token_id=1, eos_token_id=0)[0]
    assert item["attention_mask"].tolist() == [True] * 4 + [False] * 2 + [True] * 2


def brute_force_max_repetition(tokens, max_period, min_period=1):
    """Most back-to-back copies of any n-gram, by looking at every start and period."""
    best = 0
    for period in range(min_period, min(max_period, len(tokens) // 3) + 1):
        for start in range(len(tokens)):
            times = 1
            while start + (times + 1) * period <= len(tokens) and np.array_equal(
                tokens[start + times * period : start + (times + 1) * period], tokens[start : start + period]
            ):
                times += 1
            if times >= 3:
                best = max(best, times)
    return best


def test_repetition_count_matches_a_brute_force_search():
    rng = np.random.default_rng(0)
    for _ in range(40):
        pattern = rng.integers(0, 5, rng.integers(1, 5))
        tokens = np.concatenate(
            [
                rng.integers(0, 3, rng.integers(0, 10)),
                np.tile(pattern, rng.integers(1, 9)),
                rng.integers(0, 3, 8),
            ]
        )
        assert max_repetition_count(tokens, 6) == brute_force_max_repetition(tokens, 6)


def test_instance_filter_masks_long_repetitions(tmp_path):
    rng = np.random.default_rng(1)
    clean = rng.permutation(200)[:64]
    repeated = np.concatenate([rng.permutation(200)[:16], np.tile([7, 8, 9], 16)])  # a 3-gram 16 times
    path = write(tmp_path / "ids.npy", np.concatenate([clean, repeated]), np.uint16)
    cfg = DataConfig(paths=[path], instance_filter=InstanceFilterConfig(repetition_max_count=16))
    ds = build_token_dataset(cfg, seq_len=64)
    assert [ds[0]["instance_mask"], ds[1]["instance_mask"]] == [True, False]
    assert keep_instance(np.tile([7, 8, 9], 15), InstanceFilterConfig(repetition_max_count=16))
    assert not keep_instance(
        np.tile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13], 3), InstanceFilterConfig(repetition_max_count=3)
    )
    assert keep_instance(
        np.tile(np.arange(14), 3), InstanceFilterConfig(repetition_max_count=3)
    )  # period 14 > 13


def test_reads_are_byte_ranges_over_http(original_data, http_root):
    root, url = http_root
    for name in ("part-0.npy", "part-1.npy"):
        (root / name).write_bytes((original_data / name).read_bytes())
    local = build_token_dataset(
        DataConfig(paths=[str(original_data / "part-0.npy"), str(original_data / "part-1.npy")]), seq_len=64
    )
    remote = build_token_dataset(DataConfig(paths=[f"{url}/part-0.npy", f"{url}/part-1.npy"]), seq_len=64)
    from tests.data.conftest import RangeHandler

    RangeHandler.sent = []
    for i in (3, 30, 21):
        assert remote[i]["input_ids"].tolist() == local[i]["input_ids"].tolist()
    assert RangeHandler.sent == [128, 128, 128]  # one 64-token range per instance, never the whole file
    RangeHandler.sent = []
    batch = remote.read_batch([5, 33, 0, 21])
    assert batch["input_ids"].tolist() == local.read_batch([5, 33, 0, 21])["input_ids"].tolist()
    assert RangeHandler.sent == [128] * 4  # a batch's ranges are fetched concurrently, one request each


@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated")
def test_loader_workers_read_over_http(original_data, http_root):
    root, url = http_root
    for name in ("part-0.npy", "part-1.npy"):
        (root / name).write_bytes((original_data / name).read_bytes())
    cfg = DataConfig(paths=[f"{url}/part-0.npy", f"{url}/part-1.npy"], num_workers=2, drop_last=True)
    loader = build_train_loader(build_token_dataset(cfg, seq_len=64), cfg, global_batch_size=4, seed=1)
    order = np.fromfile(original_data / "global_indices_seed1_ep0_G4.npy", dtype=np.uint32)
    raw = np.concatenate(
        [
            np.fromfile(original_data / n, dtype=np.uint16)[: k * 64]
            for n, k in (("part-0.npy", 21), ("part-1.npy", 17))
        ]
    )
    batches = list(loader)
    assert [b["index"].tolist() for b in batches] == order[:36].reshape(9, 4).tolist()
    assert batches[3]["input_ids"][2].tolist() == raw[order[14] * 64 : (order[14] + 1) * 64].tolist()


def test_size_not_a_multiple_of_the_dtype_names_the_file(tmp_path):
    path = tmp_path / "odd.npy"
    path.write_bytes(b"\x01\x00\x02")
    with pytest.raises(DataError, match=r"odd\.npy: size 3 bytes is not a multiple of 2 \(uint16\)"):
        build_token_dataset(DataConfig(paths=[str(path)]), seq_len=1)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.npy: file not found"):
        build_token_dataset(DataConfig(paths=[str(tmp_path / "nope.npy")]), seq_len=4)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_names_the_file(tmp_path):
    path = write(tmp_path / "secret.npy", [1, 2], np.uint16)
    os.chmod(path, 0)
    with pytest.raises(DataError, match=r"secret\.npy: permission denied"):
        build_token_dataset(DataConfig(paths=[path]), seq_len=2)


def test_directory_instead_of_a_file_names_it(tmp_path):
    (tmp_path / "shards").mkdir()
    with pytest.raises(DataError, match=r"shards: is a directory"):
        build_token_dataset(DataConfig(paths=[str(tmp_path / "shards")]), seq_len=4)


def test_label_mask_of_the_wrong_length_names_both_files(tmp_path):
    tokens = write(tmp_path / "ids.npy", np.arange(10), np.uint16)
    mask = write(tmp_path / "mask.npy", np.ones(9), np.bool_)
    with pytest.raises(DataError, match=r"mask\.npy: label mask holds 9 entries but .*ids\.npy holds 10"):
        build_token_dataset(DataConfig(paths=[tokens], label_mask_paths=[mask]), seq_len=5)
    with pytest.raises(ConfigError, match="1 files for 2 data paths"):
        build_token_dataset(DataConfig(paths=[tokens, tokens], label_mask_paths=[mask]), seq_len=5)


def test_token_ids_past_the_vocabulary_are_caught_at_load_and_on_read(tmp_path):
    bad_start = write(tmp_path / "start.npy", [3, 999, 4, 5], np.uint16)
    with pytest.raises(DataError, match=r"start\.npy: token id 999 at token 1 is not below vocab_size 500"):
        build_token_dataset(DataConfig(paths=[bad_start]), seq_len=2, vocab_size=500)
    values = np.zeros(70_000, dtype=np.uint16)
    values[69_000] = 600  # past the sample checked at load
    late = write(tmp_path / "late.npy", values, np.uint16)
    ds = build_token_dataset(DataConfig(paths=[late]), seq_len=1000, vocab_size=500)
    with pytest.raises(DataError, match=r"late\.npy: token id 600 at token 69000"):
        ds[69]


def test_empty_paths_and_unknown_dtype_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="data.paths"):
        build_token_dataset(DataConfig(paths=[]), seq_len=4)
    path = write(tmp_path / "x.npy", [1, 2], np.uint16)
    with pytest.raises(ConfigError, match="memmap_dtype: unknown dtype 'int7'"):
        build_token_dataset(DataConfig(paths=[path], memmap_dtype="int7"), seq_len=4)
