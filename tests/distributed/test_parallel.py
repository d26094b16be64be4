"""FSDP, TP, TP + sequence/loss parallel, FSDP x TP and HSDP on CPU gloo: the same losses, batches and
initial parameters as one process, and a sharded checkpoint of 2 processes resumed by 1 and by 4.

Cases share torchrun launches (start-up is most of the cost): one launch of 2 processes, one of 4, and
one single process. Median step times per case are printed (pytest -s) for the record.
"""

import dataclasses
import json
import statistics
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from olmo_fn.config import ParallelConfig
from tests.distributed.launch import case_yaml, run_driver
from tests.train.conftest import tiny_config

LAYOUTS = {
    "fsdp2": ParallelConfig(),
    "tp2": ParallelConfig(tp=2, sequence_parallel=False, loss_parallel=False),
    "tp_sp_lp2": ParallelConfig(tp=2),
    "fsdp_tp4": ParallelConfig(dp_shard=2, tp=2),
    "hsdp4": ParallelConfig(dp_replicate=2, dp_shard=2),
}


def _olmo3(tmp: Path) -> dict:
    """The tiny run as OLMo 3: a sliding window of 5 on the first layer, YaRN on the second, and documents
    (split after token 7, about one per instance) masked from each other."""
    base = tiny_config(tmp)
    model = dataclasses.replace(base.model, layer_types=("sliding", "full"), sliding_window=5, eos_token_id=7,
                                rope_yarn_factor=4.0, rope_yarn_original_max_position=16)  # fmt: skip
    return {"model": model, "data": dataclasses.replace(base.data, generate_doc_lengths=True)}


def _write(tmp: Path, name: str, **changes) -> Path:
    base = {"max_duration": "5", "eval_interval": None, "save_interval_unsharded": None, "save_interval": 5}
    return case_yaml(tmp, name, tmp / name, **{**base, **changes})


_launch = run_driver


def _records(tmp: Path, name: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(tmp.glob(f"{name}.rank*.json"))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("parallel")
    _write(tmp, "one")  # the corpus first, so that every config points at the same files
    two = [_write(tmp, name, parallel=LAYOUTS[name]) for name in ("fsdp2", "tp2", "tp_sp_lp2")]
    _launch(tmp, 2, two)
    checkpoint = str(tmp / "fsdp2" / "step5")
    resume = {"max_duration": "6", "load_path": checkpoint, "save_interval": None}
    olmo3 = _olmo3(tmp)
    _launch(tmp, 1, [tmp / "one.yaml", _write(tmp, "resume1", **resume), _write(tmp, "olmo3", **olmo3)])
    four = [_write(tmp, name, parallel=LAYOUTS[name]) for name in ("fsdp_tp4", "hsdp4")]
    four.append(_write(tmp, "resume4", parallel=ParallelConfig(dp_shard=2, tp=2), **resume))
    four.append(_write(tmp, "olmo3_fsdp_tp4", parallel=LAYOUTS["fsdp_tp4"], **olmo3))
    _launch(tmp, 4, four)
    for name in ("one", *LAYOUTS, "resume1", "resume4", "olmo3", "olmo3_fsdp_tp4"):
        times = _records(tmp, name)[0]["step_times"]
        print(f"{name}: median step {statistics.median(times) * 1000:.0f} ms over {len(times)} steps")
    return tmp


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_losses_match_one_process(runs, layout):
    one = _records(runs, "one")[0]["losses"]
    got = _records(runs, layout)[0]["losses"]
    assert sorted(got) == sorted(one) == ["1", "2", "3", "4", "5"]
    for step, loss in one.items():
        assert got[step] == pytest.approx(loss, rel=1e-5), step


def test_olmo3_windows_yarn_and_document_masks_train_alike_under_fsdp_and_tp(runs):
    one, four = _records(runs, "olmo3")[0]["losses"], _records(runs, "olmo3_fsdp_tp4")[0]["losses"]
    assert sorted(four) == sorted(one) == ["1", "2", "3", "4", "5"]
    for step, loss in one.items():
        assert four[step] == pytest.approx(loss, rel=1e-5), step
    plain = _records(runs, "one")[0]["losses"]
    assert all(abs(one[s] - plain[s]) > 1e-4 for s in one)  # the OLMo 3 attention changed what was trained


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_each_rank_reads_its_slice_of_the_global_batches(runs, layout):
    global_batches = _records(runs, "one")[0]["batches"]
    records = _records(runs, layout)
    assert len(records) == records[0]["world_size"] > 1
    for rec in records:  # data-parallel rank r of n reads rows r, r + n, ... (the original OLMo's slicing)
        expected = [b[rec["dp_rank"] :: rec["dp_size"]] for b in global_batches]
        assert rec["batches"] == expected, rec["rank"]


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_initial_parameters_are_the_same_for_every_layout(runs, layout):
    one = load_file(str(runs / "one.init.safetensors"))
    got = load_file(str(runs / f"{layout}.init.safetensors"))
    assert sorted(got) == sorted(one)
    for name, tensor in one.items():
        assert torch.equal(got[name], tensor), name


def test_sharded_checkpoint_of_two_resumes_on_one_and_four(runs):
    one, four = _records(runs, "resume1")[0]["losses"], _records(runs, "resume4")[0]["losses"]
    assert sorted(one) == sorted(four) == ["6"]
    assert four["6"] == pytest.approx(one["6"], rel=1e-5)
    assert one["6"] < _records(runs, "one")[0]["losses"]["1"]  # it continued the trained model
