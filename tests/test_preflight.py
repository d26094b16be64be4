"""preflight: everything a run touches is checked before anything is allocated; each problem is one line."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from olmo_fn.checkpoint import save_checkpoint
from olmo_fn.config import EvalConfig, ParallelConfig, TokenizerConfig
from olmo_fn.config_io import config_to_dict
from olmo_fn.errors import ConfigError
from olmo_fn.model import Transformer
from olmo_fn.preflight import preflight
from tests.train.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]


def _problems(cfg, world=1) -> list[str]:
    with pytest.raises(ConfigError) as info:
        preflight(cfg, world)
    return str(info.value).splitlines()


def test_a_good_config_passes_and_hands_over_its_datasets(tmp_path):
    cfg = tiny_config(tmp_path)
    checked = preflight(cfg, 1)
    assert len(checked.dataset) == 100 and list(checked.eval_sets) == ["valid"]
    assert preflight(cfg, 4).degrees == (1, 4, 1)


def test_data_problems_name_the_file(tmp_path):
    cfg = tiny_config(tmp_path)
    bad = tmp_path / "big-ids.npy"
    np.full(64, 5000, dtype=np.uint16).tofile(bad)
    odd = tmp_path / "odd.npy"
    odd.write_bytes(b"abc")
    for path, words in ((tmp_path / "missing.npy", "file not found"), (bad, "not below vocab_size"),
                        (odd, "not a multiple of 2")):  # fmt: skip
        (line,) = _problems(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, paths=[str(path)])))
        assert str(path) in line and words in line
    (line,) = _problems(
        dataclasses.replace(cfg, eval=EvalConfig(datasets={"v": [str(tmp_path / "nope.npy")]}))
    )
    assert line.startswith("eval.datasets:") and "nope.npy" in line


def test_batch_arithmetic_degrees_and_every_problem_at_once(tmp_path):
    cfg = tiny_config(tmp_path, global_train_batch_size=6, device_train_microbatch_size=2)
    (line,) = _problems(cfg, world=4)
    assert line.startswith("global_train_batch_size: 6 does not divide over 4")
    (line,) = _problems(
        dataclasses.replace(cfg, global_train_batch_size=12, device_train_microbatch_size=4), 2
    )
    assert line.startswith("device_train_microbatch_size: 4 does not divide the 6 instances")
    many = dataclasses.replace(
        cfg, parallel=ParallelConfig(tp=3), data=dataclasses.replace(cfg.data, paths=[])
    )
    lines = _problems(many, world=4)
    assert len(lines) == 2
    assert (
        lines[0].startswith("parallel: dp_replicate 1 x dp_shard -1 x tp 3")
        and "data.paths is empty" in lines[1]
    )


def test_save_folder_load_path_and_tokenizer(tmp_path):
    cfg = tiny_config(tmp_path)
    model = Transformer(cfg.model)
    save_checkpoint(cfg.save_folder, 3, model, None, {}, config_to_dict(cfg), sharded=False, keep=-1)
    (line,) = _problems(cfg)
    assert line.startswith(f"save_folder: {cfg.save_folder} already holds checkpoints")
    preflight(dataclasses.replace(cfg, save_overwrite=True), 1)
    preflight(dataclasses.replace(cfg, try_load_latest_save=True), 1)
    fresh = dataclasses.replace(cfg, save_folder=str(tmp_path / "other"))
    (line,) = _problems(dataclasses.replace(fresh, load_path=str(tmp_path / "no-such-checkpoint")))
    assert line.startswith("load_path:") and "no-such-checkpoint" in line
    wider = dataclasses.replace(
        fresh,
        model=dataclasses.replace(cfg.model, d_model=64),
        load_path=f"{cfg.save_folder}/step3-unsharded",
    )
    (line,) = _problems(wider)
    assert line.startswith("load_path: the checkpoint's model.d_model is 32 but the run's is 64")
    from tokenizers import Tokenizer, models

    tok = tmp_path / "tok.json"
    Tokenizer(models.WordLevel({f"w{i}": i for i in range(100)}, unk_token="w0")).save(str(tok))
    (line,) = _problems(dataclasses.replace(fresh, tokenizer=TokenizerConfig(identifier=str(tok))))
    assert line.startswith("tokenizer.identifier: the tokenizer has 100 tokens but model.vocab_size is 64")
    (line,) = _problems(
        dataclasses.replace(fresh, tokenizer=TokenizerConfig(identifier=str(tmp_path / "no.json")))
    )
    assert line.startswith("tokenizer.identifier:") and "no.json is neither a file nor packaged" in line
    packaged_elsewhere = TokenizerConfig(
        identifier="tokenizers/not-shipped.json"
    )  # a package's name: not checked
    preflight(dataclasses.replace(fresh, tokenizer=packaged_elsewhere), 1)  # passes


def test_the_7b_recipe_with_a_missing_file_fails_in_one_line_before_building(tmp_path):
    """Nothing of the 7B model is allocated (that alone would take ~110 GB with AdamW): the run stops at
    the file, exit 2, one line, no traceback, nothing written."""
    out = subprocess.run(
        [sys.executable, "experiments/olmo_7b.py", f"--data.paths=[{tmp_path}/missing.npy]",
         f"--save_folder={tmp_path}/run"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.splitlines() == [
        f"error: {tmp_path}/missing.npy: file not found; check the path (and, for a URL, its bucket and credentials)"
    ]
    assert not (tmp_path / "run").exists()


def test_keep_zero_means_that_kind_of_checkpoint_is_off_everywhere(tmp_path):
    from olmo_fn.checkpoint import save_checkpoint
    from olmo_fn.config import TrainConfig
    from olmo_fn.run_context import checkpoint_notes, saves_due

    cfg = TrainConfig(save_interval=10, save_num_checkpoints_to_keep=0, save_interval_unsharded=20)
    assert saves_due(cfg, 10, 100) == [] and saves_due(cfg, 20, 100) == [False]
    assert checkpoint_notes(cfg) == [
        "save_interval=10 has no effect: save_num_checkpoints_to_keep=0 turns sharded checkpoints off"
    ]
    off = TrainConfig(save_num_unsharded_checkpoints_to_keep=0, save_num_checkpoints_to_keep=0)
    assert saves_due(off, 100, 100) == []  # not even the final one
    with pytest.raises(ConfigError, match="keep=0 means this kind of checkpoint is off"):
        save_checkpoint(str(tmp_path), 1, None, None, {}, {}, sharded=False, keep=0)
