"""A run that gets SIGTERM (what Slurm and Kubernetes send before they kill; Slurm to every process of the
job, data workers included) finishes its step, writes a checkpoint, exits with status 75 and goes on from that step with --try_load_latest_save; bad signal names
are refused before anything starts. (Several ranks: tests/distributed/test_preemption_distributed.py.)"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from olmo_fn.config import TrainConfig
from olmo_fn.errors import ConfigError
from olmo_fn.preemption import PREEMPTED_EXIT_STATUS, StopSignals, signal_numbers
from olmo_fn.run_context import stop_save_kind

ROOT = Path(__file__).resolve().parents[2]
TINY = ["experiments/olmo_tiny.py", "--model.n_layers=1", "--model.d_model=64", "--model.n_heads=2",
        "--model.mlp_hidden_size=128", "--model.max_sequence_length=64", "--global_train_batch_size=4",
        "--device_train_microbatch_size=4", "--tracking.no-aim", "--tracking.progress-bar=False",
        "--no-eval_on_load", "--save_interval_unsharded=1000", "--console_log_interval=1"]  # fmt: skip


def _steps(folder: Path) -> list[int]:
    metrics = folder / "metrics.jsonl"
    lines = metrics.read_text().splitlines() if metrics.exists() else []
    return [json.loads(line)["step"] for line in lines if "train/CrossEntropyLoss" in line]


def test_sigterm_saves_exits_75_and_resumes_from_that_step(tmp_path):
    tokens = tmp_path / "tokens.npy"
    np.random.default_rng(0).integers(0, 4096, size=400 * 64).astype(np.uint16).tofile(tokens)
    run = tmp_path / "run"
    cmd = [sys.executable, *TINY, f"--data.paths=[{tokens}]", f"--save_folder={run}"]
    proc = subprocess.Popen(  # 2 data workers, and in a session of its own, like a job step
        [*cmd, "--max_duration=100000", "--data.num_workers=2"], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while len(_steps(run)) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)  # as Slurm does: to every process, the data workers too
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == PREEMPTED_EXIT_STATUS, out[-3000:]
    stopped = _steps(run)[-1]
    assert stopped >= 3
    assert f"[step {stopped}] stopped by SIGTERM: checkpoint {run}/step{stopped}-unsharded" in out
    assert "greedy continuation" not in out  # a stopped run does nothing more than save
    resumed = subprocess.run(
        [*cmd, f"--max_duration={stopped + 2}", "--try_load_latest_save"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _steps(run)[-2:] == [stopped + 1, stopped + 2]
    assert (run / f"step{stopped + 2}-unsharded").is_dir()


def test_a_bad_signal_name_is_one_line_before_anything_starts(tmp_path):
    out = subprocess.run(
        [sys.executable, *TINY, "--stop_signals", "SIGTERM", "SIGKILL", f"--save_folder={tmp_path}/run"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "error: stop_signals: 'SIGKILL' is not a signal a process can catch" in out.stderr
    assert not (tmp_path / "run").exists()


def test_stop_signals_record_while_entered_and_restore_the_handlers():
    before = signal.getsignal(signal.SIGUSR1)
    with StopSignals(["SIGUSR1", "term"]) as signals:
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.received == [signal.SIGUSR1, signal.SIGTERM]
    assert signal.getsignal(signal.SIGUSR1) is before
    assert signal_numbers([]) == []
    with pytest.raises(ConfigError, match="'SIGNOPE'"):
        signal_numbers(["SIGNOPE"])


@pytest.mark.parametrize(
    "changes,kind",
    [({}, False), ({"save_interval": 10}, True), ({"save_interval": 10, "save_num_checkpoints_to_keep": 0}, False),
     ({"save_num_unsharded_checkpoints_to_keep": 0}, True),
     ({"save_num_unsharded_checkpoints_to_keep": 0, "save_num_checkpoints_to_keep": 0}, None)],
)  # fmt: skip
def test_a_stopped_run_saves_sharded_when_the_run_saves_sharded(changes, kind):
    assert stop_save_kind(TrainConfig(**changes)) is kind
