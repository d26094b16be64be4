"""The launchers' checks before anything is submitted, and what their scripts ask the scheduler for. (The jobs
themselves run on a real Slurm in test_slurm_jobs.py and as local pods in test_k8s.py.)"""

import re
import subprocess
import sys

import pytest

import launchers.slurm as slurm
from launchers.slurm import SlurmJob, render
from tests.launchers.slurm_cluster import ROOT


def docstring_command(module) -> list[str]:
    """The example command of a launcher's docstring, as the shell would split it."""
    import shlex

    text = module.__doc__.split("\n\n")[1].replace("\\\n", " ")
    return shlex.split(text.strip())


def test_the_docstring_command_runs_as_written():
    cmd = docstring_command(slurm)
    assert cmd[:2] == ["python", "launchers/slurm.py"] and "--" in cmd
    out = subprocess.run([sys.executable, *cmd[1:]], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "#SBATCH --nodes=4" in out.stdout and "#SBATCH --gpus-per-node=8" in out.stdout
    assert "--nproc_per_node=8" in out.stdout
    assert (
        out.stdout.rstrip()
        .splitlines()[-5]
        .endswith("experiments/olmo_7b.py --parallel.tp=2 '--run_name=my run' &")
    )


def test_more_sbatch_options_become_sbatch_lines():
    text = render(SlurmJob("experiments/olmo_tiny.py", sbatch=["account=proj", "exclusive"]), [])
    assert "#SBATCH --account=proj\n#SBATCH --exclusive\n" in text


def test_a_cpu_job_requests_no_gpus_and_a_gpu_job_does():
    cpu = render(SlurmJob("experiments/olmo_tiny.py", nodes=2, procs_per_node=2), [])
    assert "gpus" not in cpu and "--nproc_per_node=2" in cpu and "#SBATCH --nodes=2" in cpu
    gpu = render(SlurmJob("experiments/olmo_tiny.py", nodes=2, gpus_per_node=4), [])
    assert "#SBATCH --gpus-per-node=4" in gpu and "--nproc_per_node=4" in gpu


def test_requeue_adds_try_load_latest_save_before_the_users_flags():
    text = render(SlurmJob("experiments/olmo_tiny.py", requeue=True), ["--stop_at=5"])
    assert "experiments/olmo_tiny.py --try_load_latest_save --stop_at=5 &" in text
    assert "#SBATCH --requeue" in text and "#SBATCH --signal=B:USR1@300" in text
    assert re.search(r'scontrol requeue "\$SLURM_JOB_ID"', text)


@pytest.mark.parametrize(
    "args,says",
    [
        (["--experiment", "experiments/olmo_8b.py"], "--experiment experiments/olmo_8b.py: no such file"),
        (["--experiment", "experiments/olmo_tiny.py", "--nodes", "1", "--procs-per-node", "2", "--",
          "--parallel.tp=3"], "parallel: dp_replicate 1 x dp_shard -1 x tp 3 does not make the world size 2"),
        (["--experiment", "experiments/olmo_tiny.py", "--", "--no_such_flag=1"],
         "the flags after -- do not parse for experiments/olmo_tiny.py"),
        (["--experiment", "experiments/olmo_tiny.py", "--", "--stop_signals", "SIGTERM"],
         "the job stops the training with SIGUSR1, which is not in its stop_signals (SIGTERM)"),
        (["--experiment", "experiments/olmo_tiny.py", "--signal", "USR9@10"], "--signal USR9@10: use SIG@SECONDS"),
        (["--experiment", "experiments/olmo_tiny.py", "--sbatch", "mem 4G"], "--sbatch 'mem 4G': give each option"),
    ],
    ids=["missing-file", "degrees", "bad-flag", "signal-not-handled", "bad-signal", "bad-sbatch-arg"],
)  # fmt: skip
def test_what_cannot_work_is_refused_in_one_line_before_submitting(capsys, args, says):
    with pytest.raises(SystemExit) as stop:
        slurm.main(["--submit", *args])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("error: ") and says in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_help():
    out = subprocess.run(
        [sys.executable, "launchers/slurm.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "--procs-per-node" in out.stdout and "--requeue" in out.stdout
