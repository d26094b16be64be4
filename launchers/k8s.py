"""Render (and optionally apply) a Kubernetes indexed Job + headless Service that trains an experiment file
with multi-node torchrun: pod index = node rank, pod 0 (via the Service's DNS) = the rendezvous host.

    python launchers/k8s.py --experiment experiments/olmo_1b.py --nodes 4 --gpus-per-node 8 --image IMG
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass, field

import tyro
import yaml


@dataclass
class K8sJob:
    """What to run, on how much, in which image."""

    experiment: str
    """Experiment file to train, e.g. experiments/olmo_1b.py."""
    nodes: int = 1
    """Number of pods (one per node)."""
    gpus_per_node: int = 8
    """GPUs (torchrun processes) per pod."""
    image: str = "olmo_fn:latest"
    extra_flags: list[str] = field(default_factory=list)
    """Flags passed on to the experiment, e.g. --parallel.tp=2."""
    name: str = "olmo-fn"
    namespace: str = "default"
    master_port: int = 29500
    submit: bool = False
    """Pipe the manifests to `kubectl apply -f -` instead of printing them."""


def manifests(job: K8sJob) -> list[dict]:
    """The headless Service and the indexed Job of `job`."""
    master = f"{job.name}-0.{job.name}"  # pod 0's stable DNS name through the headless Service
    flags = " ".join(shlex.quote(f) for f in job.extra_flags)
    command = (
        f"python -m torch.distributed.run --nnodes={job.nodes} --nproc_per_node={job.gpus_per_node} "
        f"--node_rank=$JOB_COMPLETION_INDEX --rdzv_backend=c10d --rdzv_endpoint={master}:{job.master_port} "
        f"--rdzv_id={job.name} {shlex.quote(job.experiment)} {flags}"
    ).strip()
    meta = {"name": job.name, "namespace": job.namespace}
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": meta,
        "spec": {"clusterIP": "None", "selector": {"job-name": job.name}, "ports": [{"port": job.master_port}]},
    }  # fmt: skip
    container = {
        "name": "trainer", "image": job.image, "command": ["bash", "-c", command],
        "env": [{"name": "MASTER_ADDR", "value": master}, {"name": "MASTER_PORT", "value": str(job.master_port)}],
        "resources": {"limits": {"nvidia.com/gpu": job.gpus_per_node}},
    }  # fmt: skip
    pod = {"subdomain": job.name, "restartPolicy": "Never", "containers": [container]}
    spec = {
        "completionMode": "Indexed", "completions": job.nodes, "parallelism": job.nodes, "backoffLimit": 0,
        "template": {"metadata": {"labels": {"job-name": job.name}}, "spec": pod},
    }  # fmt: skip
    return [service, {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec}]


def render(job: K8sJob) -> str:
    """The manifests as one YAML stream."""
    return yaml.safe_dump_all(manifests(job), sort_keys=False)


def main(job: K8sJob) -> str:
    """Print the manifests, or apply them with --submit."""
    text = render(job)
    if job.submit:
        subprocess.run(["kubectl", "apply", "-f", "-"], input=text, text=True, check=True)
    else:
        print(text)
    return text


if __name__ == "__main__":
    main(tyro.cli(K8sJob))
