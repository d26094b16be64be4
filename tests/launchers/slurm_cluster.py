"""A real Slurm for the launcher tests: the README's `tools/local_slurm.sh` commands start munged, slurmctld
and two slurmd (nodes n1, n2) once per session and stop them by PID at its end, also when tests fail. They
install Debian's slurm-wlm and munge when missing; without root or apt-get (and no Slurm installed) the tests
that need it skip, saying why."""

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDER = Path("/tmp/olmo-slurm")
UP = f"SLURM_DIR={FOLDER} bash tools/local_slurm.sh up 2"  # the README's commands
DOWN = f"SLURM_DIR={FOLDER} bash tools/local_slurm.sh down"


@dataclass
class Cluster:
    folder: Path
    env: dict[str, str]

    def run(self, *cmd: str, check: bool = True) -> str:
        out = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60)
        if check:
            assert out.returncode == 0, f"{cmd}: {out.stderr}"
        return out.stdout

    def job_field(self, job: int, name: str) -> str:
        """A field of `scontrol show job` (finished jobs stay listed for MinJobAge)."""
        for word in self.run("scontrol", "show", "job", str(job), "-o").split():
            if word.startswith(name + "="):
                return word.split("=", 1)[1]
        raise KeyError(name)

    def wait(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
            time.sleep(0.3)

    def wait_done(self, job: int, timeout: float = 300) -> str:
        """Wait until the job has ended; its final state."""
        done = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")
        self.wait(lambda: self.job_field(job, "JobState") in done, timeout, f"job {job} to end")
        return self.job_field(job, "JobState")

    def wait_requeued(self, job: int, restarts: int, timeout: float = 120) -> None:
        """Wait until Slurm has started the job again `restarts` times (tools/local_slurm.sh sets the
        credential lifetime to 10 s, so a requeued job runs again about 10 s later)."""
        done = lambda: (
            int(self.job_field(job, "Restarts")) >= restarts and self.job_field(job, "JobState") == "RUNNING"
        )  # noqa: E731
        self.wait(done, timeout, f"job {job} to run again")


def _unavailable() -> str | None:
    if shutil.which("slurmctld") and shutil.which("slurmd") and shutil.which("munged"):
        return None if os.geteuid() == 0 else "a local Slurm cluster needs root (it starts munged and slurmd)"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "Slurm is not installed and cannot be (installing slurm-wlm and munge needs root and apt-get)"
    return None


@pytest.fixture(scope="session")
def slurm():
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    shutil.rmtree(FOLDER / "state", ignore_errors=True)  # no jobs of an earlier session come back
    env = {**os.environ, "SLURM_CONF": str(FOLDER / "etc" / "slurm.conf")}
    up = subprocess.run(["bash", "-c", UP], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        assert "2   idle n[1-2]" in up.stdout, up.stdout
        yield Cluster(FOLDER, env)
    finally:
        subprocess.run(["bash", "-c", DOWN], cwd=ROOT, env=env, capture_output=True, timeout=120)
