"""A signal that reaches one rank stops every rank after the same step with one checkpoint (sharded when the
run saves sharded), a second signal during that save changes nothing, and the resumed run ends bitwise equal
to the run that was never stopped; on 2 and 4 gloo processes, over an epoch boundary of a dataset that does
not divide into global batches."""

import json
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from olmo_fn.checkpoint import find_latest
from tests.distributed.launch import DRIVER, ROOT, case_yaml

PREEMPT_DRIVER = DRIVER.parent / "preempt_driver.py"


@pytest.mark.parametrize(
    "nproc,batch,steps,sharded",
    [(2, 12, 10, False), (4, 16, 8, True)],
    ids=["2ranks-unsharded", "4ranks-sharded"],
)
def test_signal_on_one_rank_stops_all_and_resumes_bitwise(tmp_path, nproc, batch, steps, sharded):
    # 100 instances: 8 (or 6) global batches an epoch and a remainder; the resumed run (steps 6 to 10, or 6 to
    # 8) crosses into epoch 2
    saves = {"save_interval": 4} if sharded else {}
    case = case_yaml(
        tmp_path, "case", tmp_path / "run", max_duration=str(steps), global_train_batch_size=batch,
        save_interval_unsharded=4, eval_interval=None, **saves,
    )  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    result = subprocess.run(
        [*cmd, str(PREEMPT_DRIVER), str(tmp_path), str(case), "5"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    records = [json.loads((tmp_path / f"stop.rank{r}.json").read_text()) for r in range(nproc)]
    name = "step5" if sharded else "step5-unsharded"
    for rank, record in enumerate(records):
        assert record["stopped_at"] == 5 and record["stopped_by"] == "SIGUSR1", (rank, record)
        assert record["checkpoint"].endswith(name) and record["full_stopped_by"] is None
        assert record["resumed_from"] == 5 and record["final_step"] == steps
    assert records[-1]["signals_sent"] == ["SIGUSR1", "SIGTERM"]
    assert all(r["signals_sent"] == [] for r in records[:-1])
    assert "stopped by SIGUSR1" in result.stdout + result.stderr
    full, resumed = load_file(tmp_path / "full.safetensors"), load_file(tmp_path / "resumed.safetensors")
    assert full.keys() == resumed.keys()
    for key in full:
        assert full[key].equal(resumed[key]), key
    assert find_latest(str(tmp_path / "run")).rstrip("/").rsplit("/", 1)[-1] in (
        f"step{steps}",
        f"step{steps}-unsharded",
    )
