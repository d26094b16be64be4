"""Render, or submit, a Slurm batch job that trains an experiment file on N nodes with one torchrun each.

    python launchers/slurm.py --experiment experiments/olmo_7b.py --nodes 4 --gpus-per-node 8 \\
        --dry-run -- --parallel.tp=2 --run_name='my run'

prints the script (--submit instead of --dry-run hands it to sbatch). Everything after `--` goes to the
experiment unchanged, byte for byte. Before submitting, the flags are parsed against the experiment (a typo
fails here, not in the queue) and the parallel degrees are checked against nodes x processes. The job runs
in the folder it was rendered in; srun starts one torchrun per node, which meet at the first node's address
(its Slurm NodeAddr) on a port derived from the job id.

Stopping early: `--signal USR1@300` (the default) has Slurm send USR1 to the batch script 300 s before
the time limit; the script passes it to the training, which finishes its step, writes a checkpoint and
exits (status 75). With `--requeue` the script then requeues the job, which resumes from that checkpoint
(the experiment gets --try_load_latest_save). A preemption or `scontrol requeue` sends SIGTERM to every
process instead: the training stops the same way within Slurm's KillWait. The batch script exits with
status 75 when a stop signal ended its run, else with srun's status.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import tyro

from olmo_fn.errors import ConfigError
from olmo_fn.jobs import launch, local_save_folder

STOPPED_STATUS = 75


@dataclass
class SlurmJob:
    """What to run, on how much, and how it stops."""

    experiment: str
    """Experiment file to train, e.g. experiments/olmo_1b.py."""
    nodes: int = 1
    """Nodes to allocate; one torchrun runs on each."""
    gpus_per_node: int = 0
    """GPUs to request per node (--gpus-per-node); 0 = a CPU job, which requests none."""
    procs_per_node: int | None = None
    """Training processes per node; default one per GPU (1 for a CPU job)."""
    cpus_per_node: int | None = None
    """CPUs to request per node (--cpus-per-task of the one task per node); None = the cluster default."""
    job_name: str = "olmo_fn"
    partition: str | None = None
    """Slurm partition; None = the cluster default."""
    time: str = "48:00:00"
    """Time limit (Slurm syntax)."""
    output: str | None = None
    """Job log file (Slurm patterns such as %j); None = slurm-%j.out in the working folder."""
    signal: str | None = "USR1@300"
    """SIG@SECONDS: Slurm sends SIG to the batch script SECONDS before the time limit, which stops the
    training with a checkpoint (the experiment must list SIG in its stop_signals); None = no warning."""
    requeue: bool = False
    """After a stop on the warning signal, requeue the job; it resumes with --try_load_latest_save."""
    sbatch: list[str] = field(default_factory=list)
    """More sbatch options as NAME=VALUE (or NAME), e.g. account=proj mem=200G: each becomes an
    `#SBATCH --NAME=VALUE` line."""
    python: str = sys.executable
    """Python interpreter on the nodes (default: the one running this launcher)."""
    submit: bool = False
    """Submit with sbatch (else print the script)."""
    dry_run: bool = False
    """Print the script and the sbatch command, submit nothing."""

    @property
    def procs(self) -> int:
        return self.procs_per_node or self.gpus_per_node or 1

    def save_folder_warning(self, save_folder: str) -> str | None:
        return local_save_folder(save_folder)

    @property
    def stop_signal(self) -> str | None:
        """The signal the training gets before the time limit (SIGUSR1), or None."""
        parts = _signal_parts(self.signal)
        return f"SIG{parts[0]}" if parts else None


# One torchrun per node; Slurm's per-node variables are read on the node. The python, experiment and flags
# arrive as bash's positional arguments, so they are never parsed by a shell again.
_NODE_COMMAND = (
    'exec "$0" -m torch.distributed.run --nnodes="$SLURM_NNODES" --nproc_per_node={procs} '
    '--rdzv_backend=c10d --rdzv_endpoint="$MASTER_ADDR:$MASTER_PORT" --rdzv_id="$SLURM_JOB_ID" '
    "--rdzv_conf=is_host=$((SLURM_NODEID == 0)) --signals-to-handle={signals} --shutdown-timeout={grace} "
    '"$@"'
)


def _signal_parts(spec: str | None) -> tuple[str, int] | None:
    if spec is None:
        return None
    name, _, seconds = spec.removeprefix("B:").partition("@")
    name = name.upper().removeprefix("SIG")
    if not name or not seconds.isdigit() or not hasattr(signal, f"SIG{name}"):
        raise ConfigError(f"--signal {spec}: use SIG@SECONDS with a signal name, e.g. USR1@300")
    return name, int(seconds)


def _sbatch_options(job: SlurmJob, warn: tuple[str, int] | None) -> list[str]:
    """The #SBATCH lines: GPUs only when the job has them, the warning signal to the batch script (B:)."""
    options = [
        f"--job-name={job.job_name}",
        f"--nodes={job.nodes}",
        "--ntasks-per-node=1",
        f"--time={job.time}",
    ]
    options += [f"--gpus-per-node={job.gpus_per_node}"] if job.gpus_per_node else []
    options += [f"--cpus-per-task={job.cpus_per_node}"] if job.cpus_per_node else []
    options += [f"--partition={job.partition}"] if job.partition else []
    options += [f"--output={job.output}"] if job.output else []
    options += ["--open-mode=append"]  # a requeued run's log goes on in the same file
    options += [f"--signal=B:{warn[0]}@{warn[1]}"] if warn else []
    options += ["--requeue"] if job.requeue else ["--no-requeue"]
    for arg in job.sbatch:
        if arg.startswith("-") or any(c.isspace() for c in arg):
            raise ConfigError(f"--sbatch {arg!r}: give each option as NAME=VALUE without dashes or spaces")
    return [*options, f"--chdir={Path.cwd()}", *(f"--{arg}" for arg in job.sbatch)]


def render(job: SlurmJob, flags: list[str]) -> str:
    """The sbatch script that runs `job` with the experiment's `flags`."""
    warn = _signal_parts(job.signal)
    options = _sbatch_options(job, warn)
    signals = ",".join(
        dict.fromkeys(["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", *([f"SIG{warn[0]}"] if warn else [])])
    )
    node_command = _NODE_COMMAND.format(procs=job.procs, signals=signals, grace=warn[1] if warn else 120)
    argv = [job.python, job.experiment, *(["--try_load_latest_save"] if job.requeue else []), *flags]
    forward = f'stop={warn[0]}; kill -{warn[0]} "$step" 2>/dev/null' if warn else ""
    requeue = (
        f'if [ "$stop" = {warn[0]} ]; then echo "olmo_fn: requeueing job $SLURM_JOB_ID"; '
        'scontrol requeue "$SLURM_JOB_ID"; fi\n'
        if warn and job.requeue
        else ""
    )
    return "\n".join(
        [
            "#!/bin/bash",
            *(f"#SBATCH {o}" for o in options),
            "# Rendered by launchers/slurm.py; flags after the experiment are passed to it verbatim.",
            "set -uo pipefail",
            'first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
            "addr=$(scontrol show node \"$first\" | grep -o 'NodeAddr=[^ ]*' | cut -d= -f2)",
            "export MASTER_ADDR=${addr:-$first} MASTER_PORT=$((20000 + SLURM_JOB_ID % 10000))",
            'echo "olmo_fn: job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $SLURM_JOB_NODELIST,'
            ' rendezvous $MASTER_ADDR:$MASTER_PORT"',
            "stop=",
            *([f"trap '{forward}' {warn[0]}"] if warn else []),
            "trap 'stop=TERM' TERM  # preemption, scontrol requeue, scancel: Slurm signals every process itself",
            f"srun --ntasks-per-node=1 --kill-on-bad-exit=0 bash -c {shlex.quote(node_command)} \\",
            "  " + " ".join(shlex.quote(a) for a in argv) + " &",
            "step=$!",
            'while :; do wait "$step"; status=$?; kill -0 "$step" 2>/dev/null || break; done',
            requeue + f'[ -n "$stop" ] && exit {STOPPED_STATUS}',
            'exit "$status"',
            "",
        ]
    )


def run(job: SlurmJob, flags: list[str]) -> None:
    """Print the script, or submit it."""
    script = render(job, flags)
    if not job.submit or job.dry_run:
        print(script, end="")
        if job.dry_run:
            print("# would run: sbatch --parsable < (this script)", file=sys.stderr)
        return
    result = subprocess.run(["sbatch", "--parsable"], input=script, text=True, capture_output=True)
    if result.returncode != 0:
        print(f"error: sbatch refused the job: {result.stderr.strip()}", file=sys.stderr)
        sys.exit(1)
    print(f"submitted job {result.stdout.strip().split(';')[0]}")


def main(argv: list[str] | None = None) -> None:
    launch(argv, lambda own: tyro.cli(SlurmJob, args=own, description=__doc__), run)


if __name__ == "__main__":
    main()
