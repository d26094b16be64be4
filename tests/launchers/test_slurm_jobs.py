"""launchers/slurm.py on a real Slurm (two emulated nodes): a 2-node x 2-process job, whose flags reach the
experiment byte for byte, is stopped twice (`scontrol requeue`, then the time-limit warning signal), resumes
each time, and ends with parameters bitwise equal to `torchrun --standalone --nproc_per_node=4` of the same
flags. (One job for all of it: each job start costs a minute of CI on two cores.)"""

import re
import subprocess
import sys

import yaml

from tests.launchers.reference import STEPS, assert_equal_to_reference
from tests.launchers.slurm_cluster import ROOT, Cluster

RUN_NAME = 'it\'s "my" run $HOME * ü, [x] `ls` \\n'


def submit(cluster: Cluster, launcher_args: list[str], flags: list[str]) -> tuple[int, str]:
    out = subprocess.run(
        [sys.executable, "launchers/slurm.py", "--experiment", "experiments/olmo_tiny.py", "--nodes", "2",
         "--procs-per-node", "2", *launcher_args, "--submit", "--", *flags],
        cwd=ROOT, env=cluster.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return int(re.fullmatch(r"submitted job (\d+)\n", out.stdout).group(1)), out.stderr


def _step_lines(text: str) -> list[int]:
    return [int(s) for s in re.findall(rf"^\[step (\d+)/{STEPS}\]", text, flags=re.M)]


def test_two_node_job_gets_its_flags_verbatim_resumes_when_requeued_and_signalled_and_equals_torchrun(
    slurm, reference, tmp_path
):
    log, run = tmp_path / "job.out", tmp_path / "run"
    job, warned = submit(
        slurm,
        ["--output", str(log), "--requeue", "--signal", "USR1@60"],
        [*reference["flags"], f"--save_folder={run}", f"--run_name={RUN_NAME}"],
    )
    assert (
        "is on a node-local filesystem" in warned
    )  # the emulated nodes share this disk; real ones would not
    read = lambda: log.read_text() if log.exists() else ""  # noqa: E731
    slurm.wait(lambda: len(_step_lines(read())) >= 3, 120, "the first steps")
    assert f"olmo_fn: job {job} (restart 0) on n[1-2], rendezvous 127.0.0.1:{20000 + job % 10000}" in read()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["run_name"] == RUN_NAME
    assert saved["data"]["paths"] == [
        str(reference["folder"] / "a b.npy"),
        str(reference["folder"] / "c,d.npy"),
    ]
    slurm.run(
        "scontrol", "requeue", str(job)
    )  # what a preemption does: SIGTERM to every process, then requeue
    slurm.wait_requeued(job, 1)
    first_stop = int(re.search(r"\[step (\d+)\] stopped by SIGTERM", read()).group(1))
    slurm.wait(
        lambda: "(restart 1)" in read() and _step_lines(read())[-1] >= first_stop + 3,
        120,
        "the resumed steps",
    )
    slurm.run(
        "scancel", "--batch", "--signal=USR1", str(job)
    )  # what --signal=B:USR1@60 sends before the time limit
    slurm.wait_requeued(job, 2)
    assert slurm.wait_done(job) == "COMPLETED", read()[-3000:]
    text = read()
    assert slurm.job_field(job, "Restarts") == "2" and slurm.job_field(job, "ExitCode") == "0:0"
    second_stop = int(re.search(r"\[step (\d+)\] stopped by SIGUSR1", text).group(1))
    assert f"olmo_fn: requeueing job {job}" in text and "(restart 2)" in text
    assert first_stop < second_stop < STEPS
    assert _step_lines(text) == list(range(1, STEPS + 1))  # each step trained once: none lost, none repeated
    assert yaml.safe_load((run / "config.yaml").read_text())["run_name"] == RUN_NAME  # the resumes kept it
    assert_equal_to_reference(run, reference["reference"])
