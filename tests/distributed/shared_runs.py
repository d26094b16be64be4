"""The parallel_driver.py runs that test_parallel.py, test_load_everywhere.py,
test_shared_folder_and_uneven_eval.py and test_downstream_distributed.py check, made once for all four (the
`shared_runs` fixture of conftest.py): start-up is most of the cost, so one torchrun launch of 2 processes
and one of 4 serve every file, and the single-process runs go in the test process itself.

Layouts (test_parallel.py, test_load_everywhere.py):

- Training, 6 steps from scratch: one process ("one"), FSDP, TP and TP + sequence/loss parallel on 2, FSDP x
  TP and HSDP on 4, and the OLMo 3 attention on 1 and on FSDP x TP 4. Every layout saves a sharded
  checkpoint at step 5 and an unsharded one at step 6 (its last); the writers, one process and FSDP on 2,
  also an unsharded one at step 5.
- From those, the six checkpoint kinds: sharded and unsharded step 5 of each writer, an original OLMo folder
  (model.pt, optim.pt with integer ids, train.pt) and a Hugging Face folder (both from the 1-process run).
- Each kind loaded by one process, by FSDP and TP on 2, by FSDP x TP and HSDP on 4, for one more step (the HF
  folder, which has no optimizer or trainer state, for the first step of a run with both states reset), and
  "reset-reference": the 1-process unsharded step 5 loaded with both states reset.

A 2-process run resumed by one process (test_train_data_parallel.py): "latest_by2" is a copy of the FSDP
writer's folder, continued to step 7 with try_load_latest_save (from its latest save, step 6).

Spikes (test_skip_spikes_distributed.py): "spikes2" trains 7 steps on 2 processes with
--optimizer.skip_spikes, a spike injected on rank 1 only at steps 3 (a non-finite loss) and 6 (x30).

Many ranks on one save folder (test_shared_folder_and_uneven_eval.py): "overwrite1" trains 6 steps, saving
at 2, 4 and 6 and evaluating a 5-instance set at batch 1 at steps 0, 2 and 4; "overwrite2" (FSDP) and
"overwrite4" (HSDP) run the same to stop_at=4 with --save_overwrite in a copy of its folder.

Downstream in the loop (test_downstream_distributed.py): "ds1", "ds2" (FSDP) and "ds4" (FSDP) train a
tokenizer-sized tiny model 4 steps with three downstream evaluators (DOWNSTREAM_BATCH rows a pass), at step 0
(eval_on_load) and step 4.

Every case writes {name}.rank{R}.json and {name}.init.safetensors (parallel_driver.py); each checkpoint
lies in runs/{name}/.
"""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np

from olmo_fn.config import EvalConfig, EvaluatorConfig, ParallelConfig, TokenizerConfig
from tests.checkpoint.original_writer import write_hf, write_original_dir
from tests.distributed.launch import case_yaml, run_driver
from tests.distributed.parallel_driver import run_case
from tests.train.conftest import SEQ, tiny_config

TRAIN_LAYOUTS = {
    "fsdp2": ParallelConfig(),
    "tp2": ParallelConfig(tp=2, sequence_parallel=False, loss_parallel=False),
    "tp_sp_lp2": ParallelConfig(tp=2),
    "fsdp_tp4": ParallelConfig(dp_shard=2, tp=2),
    "hsdp4": ParallelConfig(dp_replicate=2, dp_shard=2),
}
LOAD_LAYOUTS = {
    1: {"one": ParallelConfig()},
    2: {"fsdp2": TRAIN_LAYOUTS["fsdp2"], "tp2": ParallelConfig(tp=2)},
    4: {"fsdp_tp4": TRAIN_LAYOUTS["fsdp_tp4"], "hsdp4": TRAIN_LAYOUTS["hsdp4"]},
}
KINDS = ["unsharded_by1", "sharded_by1", "unsharded_by2", "sharded_by2", "olmo_by1", "hf_by1"]
WRITERS = {"one": 1, "fsdp2": 2}
# a load case trains one step and is done: no evaluation, no checkpoint of its own
QUIET = {"eval": EvalConfig(), "save_num_checkpoints_to_keep": 0, "save_num_unsharded_checkpoints_to_keep": 0}


def olmo3(tmp: Path) -> dict:
    """The tiny run as OLMo 3: a sliding window of 5 on the first layer, YaRN on the second, and documents
    (split after token 7, about one per instance) masked from each other."""
    base = tiny_config(tmp)
    model = dataclasses.replace(base.model, layer_types=("sliding", "full"), sliding_window=5, eos_token_id=7,
                                rope_yarn_factor=4.0, rope_yarn_original_max_position=16)  # fmt: skip
    return {"model": model, "data": dataclasses.replace(base.data, generate_doc_lengths=True)}


def _write(tmp: Path, name: str, **changes) -> Path:
    base = {"max_duration": "6", "eval_interval": None, "save_interval_unsharded": None, "save_interval": 5}
    return case_yaml(tmp, name, tmp / "runs" / name, **{**base, **changes})


def _training(tmp: Path, name: str, **changes) -> Path:
    writer = {"save_interval_unsharded": 5} if name in WRITERS else {}
    return _write(tmp, name, parallel=TRAIN_LAYOUTS.get(name, ParallelConfig()), **writer, **changes)


def _loads(tmp: Path, nproc: int, folders: dict[str, Path]) -> list[Path]:
    return [
        _write(tmp, f"{kind}-{layout}", parallel=par, load_path=str(folders[kind]), **QUIET,
               **({"max_duration": "1", "reset_trainer_state": True, "reset_optimizer_state": True}
                  if kind == "hf_by1" else {}))
        for layout, par in LOAD_LAYOUTS[nproc].items()
        for kind in KINDS
    ]  # fmt: skip


def _overwrite(tmp: Path, nproc: int) -> Path:
    eval_file = tmp / "eval5.npy"
    if not eval_file.exists():
        (np.arange(5 * SEQ) % 60 + 2).astype(np.uint16).tofile(eval_file)  # exactly 5 instances
    layout = {1: ParallelConfig(), 2: ParallelConfig(), 4: ParallelConfig(dp_replicate=2, dp_shard=2)}[nproc]
    changes = dict(
        max_duration="6", stop_at=4 if nproc > 1 else None, save_interval_unsharded=2, eval_interval=2,
        eval_on_load=True, save_overwrite=True, parallel=layout,
        eval=EvalConfig(datasets={"five": [str(eval_file)]}, device_eval_batch_size=1),
    )  # fmt: skip
    name = f"overwrite{nproc}"
    if nproc > 1:  # an earlier run's checkpoints (2, 4, 6) in its folder
        shutil.copytree(tmp / "runs" / "overwrite1", tmp / "runs" / name)
    return case_yaml(tmp, name, tmp / "runs" / name, **changes)


DOWNSTREAM = ["copa", "commitment_bank", "arc_easy_ppl"]
DOWNSTREAM_BATCH = 4  # 182 batches: some ranks of 4 are a batch short


def _downstream(tmp: Path, nproc: int) -> Path:
    from tests.eval.helpers import TOKENIZER
    from tests.eval.helpers import tiny_config as tiny_model

    evaluators = [EvaluatorConfig(label) for label in DOWNSTREAM]
    return case_yaml(
        tmp, f"ds{nproc}", tmp / "runs" / f"ds{nproc}", model=tiny_model(max_sequence_length=32),
        tokenizer=TokenizerConfig(TOKENIZER), evaluators=evaluators, eval_on_load=True, eval_interval=None,
        max_duration="4", save_interval_unsharded=None,
    )  # fmt: skip


def _spikes(tmp: Path) -> Path:
    optimizer = dataclasses.replace(
        tiny_config(tmp).optimizer, skip_spikes=True, skip_spikes_window=8, skip_spikes_min_values=4
    )
    spikes = {"rank": 1, "factors": {"3": float("inf"), "6": 30.0}}
    (tmp / "spikes2.spikes.json").write_text(json.dumps(spikes))
    return _write(tmp, "spikes2", max_duration="7", optimizer=optimizer, **QUIET)


def build(tmp: Path) -> Path:
    """Runs every case into tmp (one process in this one, then 2, then one, then 4) and returns tmp."""
    folders = {
        f"{kind}_by{n}": tmp / "runs" / writer / name
        for writer, n in WRITERS.items()
        for kind, name in (("sharded", "step5"), ("unsharded", "step5-unsharded"))
    }
    folders["olmo_by1"], folders["hf_by1"] = tmp / "olmo_by1", tmp / "hf_by1"
    for case in (
        _training(tmp, "one"),
        _write(tmp, "olmo3", **olmo3(tmp)),
        _overwrite(tmp, 1),
        _downstream(tmp, 1),
    ):
        run_case(case, tmp)
    trainer = {"global_step": 5, "global_train_examples_seen_this_epoch": 20, "global_train_tokens_seen": 640,
               "epoch": 0, "world_size": 1}  # fmt: skip
    write_original_dir(str(folders["unsharded_by1"]), folders["olmo_by1"], trainer)
    write_hf(str(folders["unsharded_by1"]), folders["hf_by1"])
    two = [_training(tmp, name) for name in ("fsdp2", "tp2", "tp_sp_lp2")]
    run_driver(
        tmp, 2, [*two, _overwrite(tmp, 2), _downstream(tmp, 2), _spikes(tmp), *_loads(tmp, 2, folders)]
    )
    reset = {"reset_trainer_state": True, "reset_optimizer_state": True, "max_duration": "1", **QUIET}
    shutil.copytree(tmp / "runs" / "fsdp2", tmp / "runs" / "latest_by2")
    latest = _write(tmp, "latest_by2", max_duration="7", try_load_latest_save=True, **QUIET)
    for case in (
        latest,
        *_loads(tmp, 1, folders),
        _write(tmp, "reset-reference", load_path=str(folders["unsharded_by1"]), **reset),
    ):
        run_case(case, tmp)
    four = [_training(tmp, name) for name in ("fsdp_tp4", "hsdp4")]
    four.append(_write(tmp, "olmo3_fsdp_tp4", parallel=TRAIN_LAYOUTS["fsdp_tp4"], **olmo3(tmp)))
    run_driver(tmp, 4, [*four, _overwrite(tmp, 4), _downstream(tmp, 4), *_loads(tmp, 4, folders)])
    return tmp
