"""Downstream evaluation on 2 and 4 gloo processes gives one process's scores: the tool under torchrun (FSDP,
and TP x FSDP), the in-loop evaluators of a training run (shared_runs.py's "ds" cases), and the tool on the
2-process run's final checkpoint. The tasks' batch counts leave some ranks a batch short (dummy passes).
The tool's single-process runs go in the test process (its main, as the command line calls it)."""

import contextlib
import importlib.util
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import tyro

from olmo_fn.eval.downstream import prepare_task, request_items
from olmo_fn.eval.scoring import plan
from tests.distributed.shared_runs import DOWNSTREAM, DOWNSTREAM_BATCH
from tests.eval.helpers import encoder, random_model, tiny_config, write_checkpoints

ROOT = Path(__file__).resolve().parents[2]
TASKS = "piqa,copa,commitment_bank,trivia_qa_wiki_ppl,arc_easy:pmi_dc"


def _in_process(checkpoint: str, *args: str) -> dict:
    spec = importlib.util.spec_from_file_location("evaluate_tool", ROOT / "tools" / "evaluate.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        tyro.cli(tool.main, args=[checkpoint, *args])
    return json.loads(out.getvalue())


def evaluate(checkpoint: str, nproc: int, *args: str) -> dict:
    if nproc == 1:
        return _in_process(checkpoint, *args)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = [
        *launch,
        str(ROOT / "tools" / "evaluate.py"),
        checkpoint,
        *args,
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def test_uneven_batches():
    """The batch counts of these tests do not divide over 2 or 4 ranks."""
    specs = [t.partition(":") for t in TASKS.split(",")]
    tasks = [prepare_task(label, encoder(), metric=metric or None, limit=30) for label, _, metric in specs]
    assert len(plan(request_items(tasks), 3).batches) % 2 == 1  # and so % 4 != 0
    in_loop = [prepare_task(label, encoder()) for label in DOWNSTREAM]  # and the in-loop evaluators'
    assert len(plan(request_items(in_loop), DOWNSTREAM_BATCH).batches) % 4 != 0


@pytest.mark.slow
def test_the_tool_on_2_and_4_processes_equals_one(tmp_path):
    cfg = tiny_config()
    native = write_checkpoints(tmp_path, random_model(cfg, seed=4), cfg)["native"]
    args = ["--tasks", TASKS, "--limit", "30", "--batch-size", "3", "--json"]
    one = evaluate(native, 1, *args)
    assert (
        evaluate(native, 2, *args) == one
    )  # FSDP over 2 ranks: bit for bit (4 FSDP ranks: the in-loop test)
    tp = evaluate(
        native, 4, *args, "--tp", "2"
    )  # 2 x TP=2 on 4 ranks: the head's vocabulary split, other sums
    for task, metrics in one.items():
        for metric, value in metrics.items():
            assert math.isclose(tp[task][metric], value, rel_tol=1e-6, abs_tol=1e-6), (task, metric)


def _downstream(tmp: Path, case: str) -> dict:
    return json.loads((tmp / f"{case}.rank0.json").read_text())["downstream"]


@pytest.mark.slow
def test_in_loop_on_2_and_4_processes_and_standalone_agree(shared_runs):
    got = {n: _downstream(shared_runs, f"ds{n}") for n in (1, 2, 4)}
    keys = {"eval/downstream/copa_acc", "eval/downstream/commitment_bank_acc",
            "eval/downstream_ce_loss/arc_easy_ppl_ce_loss"}  # fmt: skip
    assert {k.split("/", 1)[1] for k in got[1]} == keys and {k.split("/")[0] for k in got[1]} == {"0", "4"}
    start = {n: {k: v for k, v in g.items() if k.startswith("0/")} for n, g in got.items()}
    assert start[1] == start[2] == start[4]  # the same initial weights: the same scores, bit for bit
    # the tool on the 2-rank run's final checkpoint scores what that loop scored at its last step (on one
    # process: FSDP's scores are one process's bit for bit, as above and in the test of the tool)
    standalone = evaluate(str(shared_runs / "runs" / "ds2" / "step4-unsharded"), 1, "--tasks",
                          ",".join(DOWNSTREAM), "--batch-size", str(DOWNSTREAM_BATCH), "--json")  # fmt: skip
    final = {k.split("/", 1)[1]: v for k, v in got[2].items() if k.startswith("4/")}
    assert final == {
        "eval/downstream/copa_acc": standalone["copa"]["acc"],
        "eval/downstream/commitment_bank_acc": standalone["commitment_bank"]["acc"],
        "eval/downstream_ce_loss/arc_easy_ppl_ce_loss": standalone["arc_easy_ppl"]["ce_loss"],
    }
