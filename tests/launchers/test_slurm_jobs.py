"""launchers/slurm.py on a real Slurm (two emulated nodes): a 2-node x 2-process job ends with parameters
bitwise equal to `torchrun --standalone --nproc_per_node=4` of the same flags, which reach the experiment
byte for byte; a job stopped twice (`scontrol requeue`, then the time-limit warning signal) resumes each
time and ends bitwise equal too."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.torch import load_file

from tests.launchers.slurm_cluster import ROOT, Cluster

STEPS = 120
FLAGS = ["--model.n_layers=1", "--model.d_model=64", "--model.n_heads=2", "--model.mlp_hidden_size=128",
         "--model.max_sequence_length=64", "--global_train_batch_size=8", "--device_train_microbatch_size=2",
         "--tracking.no-aim", "--tracking.progress-bar=False", "--no-eval_on_load", "--console_log_interval=1",
         f"--max_duration={STEPS}", f"--save_interval_unsharded={STEPS}"]  # fmt: skip
RUN_NAME = 'it\'s "my" run $HOME * ü, [x] `ls` \\n'


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """Two token files and the reference: torchrun --standalone with 4 processes on the same flags."""
    folder = tmp_path_factory.mktemp("slurm-data")
    for i, name in enumerate(("a b.npy", "c,d.npy")):  # a space and a comma in the paths too
        np.random.default_rng(i).integers(0, 4096, size=300 * 64).astype(np.uint16).tofile(folder / name)
    flags = [*FLAGS, "--data.paths", str(folder / "a b.npy"), str(folder / "c,d.npy")]
    reference = folder / "reference"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4",
           "experiments/olmo_tiny.py", *flags, f"--save_folder={reference}"]  # fmt: skip
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return {
        "folder": folder,
        "flags": flags,
        "reference": load_file(reference / f"step{STEPS}-unsharded" / "model.safetensors"),
    }


def submit(cluster: Cluster, launcher_args: list[str], flags: list[str]) -> tuple[int, str]:
    out = subprocess.run(
        [sys.executable, "launchers/slurm.py", "--experiment", "experiments/olmo_tiny.py", "--nodes", "2",
         "--procs-per-node", "2", *launcher_args, "--submit", "--", *flags],
        cwd=ROOT, env=cluster.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return int(re.fullmatch(r"submitted job (\d+)\n", out.stdout).group(1)), out.stderr


def assert_equal_to_reference(folder: Path, reference: dict) -> None:
    final = load_file(folder / f"step{STEPS}-unsharded" / "model.safetensors")
    assert final.keys() == reference.keys()
    for key in final:
        assert final[key].equal(reference[key]), key


def test_two_node_job_equals_standalone_torchrun_and_gets_its_flags_verbatim(slurm, data, tmp_path):
    log, run = tmp_path / "job.out", tmp_path / "run"
    job, warned = submit(
        slurm, ["--output", str(log)], [*data["flags"], f"--save_folder={run}", f"--run_name={RUN_NAME}"]
    )
    assert (
        "is on a node-local filesystem" in warned
    )  # the emulated nodes share this disk; real ones would not
    assert slurm.wait_done(job) == "COMPLETED", log.read_text()[-3000:]
    assert slurm.job_field(job, "ExitCode") == "0:0"
    text = log.read_text()
    assert f"olmo_fn: job {job} (restart 0) on n[1-2], rendezvous 127.0.0.1:{20000 + job % 10000}" in text
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["run_name"] == RUN_NAME
    assert saved["data"]["paths"] == [str(data["folder"] / "a b.npy"), str(data["folder"] / "c,d.npy")]
    assert_equal_to_reference(run, data["reference"])


def _step_lines(text: str) -> list[int]:
    return [int(s) for s in re.findall(rf"^\[step (\d+)/{STEPS}\]", text, flags=re.M)]


def test_requeued_and_signalled_job_resumes_and_ends_bitwise_equal(slurm, data, tmp_path):
    log, run = tmp_path / "job.out", tmp_path / "run"
    job, _ = submit(
        slurm,
        ["--output", str(log), "--requeue", "--signal", "USR1@60"],
        [*data["flags"], f"--save_folder={run}"],
    )
    read = lambda: log.read_text() if log.exists() else ""  # noqa: E731
    slurm.wait(lambda: len(_step_lines(read())) >= 3, 120, "the first steps")
    slurm.run(
        "scontrol", "requeue", str(job)
    )  # what a preemption does: SIGTERM to every process, then requeue
    slurm.restart_when_requeued(job)
    first_stop = int(re.search(r"\[step (\d+)\] stopped by SIGTERM", read()).group(1))
    slurm.wait(
        lambda: "(restart 1)" in read() and _step_lines(read())[-1] >= first_stop + 3,
        120,
        "the resumed steps",
    )
    slurm.run(
        "scancel", "--batch", "--signal=USR1", str(job)
    )  # what --signal=B:USR1@60 sends before the time limit
    slurm.restart_when_requeued(job)
    assert slurm.wait_done(job) == "COMPLETED", read()[-3000:]
    text = read()
    assert slurm.job_field(job, "Restarts") == "2" and slurm.job_field(job, "ExitCode") == "0:0"
    second_stop = int(re.search(r"\[step (\d+)\] stopped by SIGUSR1", text).group(1))
    assert f"olmo_fn: requeueing job {job}" in text and "(restart 2)" in text
    assert first_stop < second_stop < STEPS
    assert _step_lines(text) == list(range(1, STEPS + 1))  # each step trained once: none lost, none repeated
    assert_equal_to_reference(run, data["reference"])
