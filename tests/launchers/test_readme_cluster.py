"""The README's "Running on a cluster" section: its commands are the ones the tests run."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import launchers.k8s as k8s
import launchers.slurm as slurm
from tests.launchers.slurm_cluster import DOWN, ROOT, UP
from tests.launchers.test_launchers import docstring_command


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Running on a cluster\n", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if line.startswith("    ") and line.strip()]


def test_the_commands_are_the_tested_ones():
    launch_slurm, up, down, launch_k8s, validate = _commands()
    assert shlex.split(launch_slurm) == docstring_command(slurm)  # run by test_launchers.py
    assert shlex.split(launch_k8s) == docstring_command(k8s)  # run by test_k8s.py
    assert (up, down) == (UP, DOWN)  # run by the slurm fixture
    assert "| python launchers/k8s_schema.py -" in validate


def test_the_validation_pipe_as_written():
    *_, validate = _commands()
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # `python` is the venv's
    out = subprocess.run(["bash", "-c", validate], cwd=ROOT, env={**os.environ, "PATH": path},
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == "ok: -: PyTorchJob/olmo-fn\n"
