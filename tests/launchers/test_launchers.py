"""The SLURM and Kubernetes launchers render multi-node torchrun jobs (text checked, YAML parsed)."""

import subprocess
import sys
from pathlib import Path

import yaml

from launchers.k8s import K8sJob
from launchers.k8s import render as render_k8s
from launchers.slurm import SlurmJob
from launchers.slurm import render as render_slurm

ROOT = Path(__file__).resolve().parents[2]


def test_slurm_script_runs_torchrun_on_every_node():
    text = render_slurm(
        SlurmJob("experiments/olmo_1b.py", nodes=4, gpus_per_node=8, extra_flags=["--parallel.tp=2"])
    )
    assert "#SBATCH --nodes=4" in text and "#SBATCH --ntasks-per-node=1" in text
    assert 'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)' in text
    assert "--nnodes=4 --nproc_per_node=8 --node_rank=$SLURM_NODEID" in text
    assert "--rdzv_endpoint=$MASTER_ADDR:$MASTER_PORT" in text
    assert text.rstrip().endswith("experiments/olmo_1b.py --parallel.tp=2'")


def test_k8s_manifests_are_an_indexed_job_and_a_headless_service():
    service, job = yaml.safe_load_all(render_k8s(K8sJob("experiments/olmo_7b.py", nodes=2, image="img:1")))
    assert service["kind"] == "Service" and service["spec"]["clusterIP"] == "None"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 2
    container = spec["template"]["spec"]["containers"][0]
    command = container["command"][-1]
    assert "--nnodes=2 --nproc_per_node=8 --node_rank=$JOB_COMPLETION_INDEX" in command
    assert "--rdzv_endpoint=olmo-fn-0.olmo-fn:29500" in command and command.endswith("experiments/olmo_7b.py")
    assert spec["template"]["spec"]["subdomain"] == service["metadata"]["name"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 8


def test_clis_have_help():
    for name in ("slurm", "k8s"):
        result = subprocess.run(
            [sys.executable, f"launchers/{name}.py", "--help"], cwd=ROOT, capture_output=True, text=True
        )
        assert result.returncode == 0 and "--nodes" in result.stdout, result.stderr
