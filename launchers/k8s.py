"""Render, or apply, the Kubernetes manifests that train an experiment file on N pods with one torchrun each.

    python launchers/k8s.py --experiment experiments/olmo_7b.py --nodes 4 --gpus-per-node 8 \\
        --image ghcr.io/me/olmo_fn:1 --volume ckpt-pvc:/ckpt --dry-run -- --save_folder=/ckpt/run

prints them (--submit instead of --dry-run pipes them to `kubectl apply -f -`). Everything after `--` goes to
the experiment unchanged (Kubernetes would expand `$(VAR)` in it, so every `$` is written as `$$`).

--kind job (default): an Indexed Job and a headless Service. Pod i runs torchrun with node rank i (its
completion index); pod 0 is the rendezvous host, `NAME-0.NAME` through the Service. --kind pytorchjob: a
Kubeflow PyTorchJob (training-operator v1), whose operator gives torchrun its ranks and master address.

Stopping: Kubernetes sends SIGTERM to each container's first process (torchrun) on preemption, eviction or
deletion, and SIGKILL --grace-seconds later. torchrun passes it to the training, whose ranks agree to stop,
write a checkpoint and exit (status 75, torchrun's status 1). Preemptions and evictions do not count against
the Job's backoff limit; the replacement pods resume from the checkpoint (the experiment always gets
--try_load_latest_save). The save folder must be shared: a --volume claim mounted in every pod, or a gs://
or s3:// URL.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from typing import Literal

import tyro
import yaml

from olmo_fn.errors import ConfigError
from olmo_fn.jobs import launch

TORCHRUN_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT"


@dataclass
class K8sJob:
    """What to run, on how much, in which image."""

    experiment: str
    """Experiment file to train, a path inside the image relative to --workdir, e.g. experiments/olmo_7b.py."""
    nodes: int = 1
    """Pods, one per node; one torchrun runs in each."""
    gpus_per_node: int = 0
    """GPUs (nvidia.com/gpu) to request per pod; 0 = a CPU job, which requests none."""
    procs_per_node: int | None = None
    """Training processes per pod; default one per GPU (1 for a CPU job)."""
    image: str = "olmo_fn:latest"
    """Container image with olmo_fn and the experiment files."""
    kind: Literal["job", "pytorchjob"] = "job"
    """job: Indexed Job + headless Service (plain Kubernetes); pytorchjob: Kubeflow PyTorchJob."""
    name: str = "olmo-fn"
    namespace: str = "default"
    workdir: str = "/workspace/olmo_fn"
    """Working folder in the image (the repository checkout)."""
    python: str = "python"
    """Python interpreter in the image."""
    port: int = 29500
    """Rendezvous port on pod 0."""
    cpus_per_node: str | None = None
    """CPU request (and limit) per pod, e.g. "32"; None = none."""
    memory_per_node: str | None = None
    """Memory request (and limit) per pod, e.g. "400Gi"; None = none."""
    volume: str | None = None
    """CLAIM:MOUNT: a PersistentVolumeClaim mounted in every pod (a shared save folder)."""
    grace_seconds: int = 300
    """terminationGracePeriodSeconds: from SIGTERM to SIGKILL, the time the training has to save."""
    backoff_limit: int = 3
    """Failed pods (other than by preemption or eviction) before the Job gives up."""
    submit: bool = False
    """Apply with `kubectl apply -f -` (else print the manifests)."""
    dry_run: bool = False
    """Print the manifests, apply nothing."""

    @property
    def procs(self) -> int:
        return self.procs_per_node or self.gpus_per_node or 1

    stop_signal = "SIGTERM"  # what Kubernetes sends

    def save_folder_warning(self, save_folder: str) -> str | None:
        mount = self.volume.split(":", 1)[1].rstrip("/") if self.volume and ":" in self.volume else None
        if "://" in save_folder or (mount and (save_folder + "/").startswith(mount + "/")):
            return None
        where = f"not under the --volume mount {mount}" if mount else "neither a URL nor on a --volume"
        return (
            f"save_folder {save_folder} is {where}: each pod would write its own checkpoints; mount a shared "
            "claim with --volume CLAIM:/MOUNT and save under it, or save to a gs:// or s3:// URL"
        )


def _escape(arg: str) -> str:
    """An argument Kubernetes passes through unchanged: it expands $(VAR) and turns $$ into $."""
    return arg.replace("$", "$$")


def _container(job: K8sJob, flags: list[str], torchrun: list[str], env: list[dict]) -> dict:
    resources: dict[str, dict] = {}
    for key, value in (("cpu", job.cpus_per_node), ("memory", job.memory_per_node)):
        if value:
            resources.setdefault("requests", {})[key] = value
            resources.setdefault("limits", {})[key] = value
    if job.gpus_per_node:
        resources.setdefault("limits", {})["nvidia.com/gpu"] = job.gpus_per_node
    command = [job.python, "-m", "torch.distributed.run", *torchrun, f"--signals-to-handle={TORCHRUN_SIGNALS}",
               f"--shutdown-timeout={job.grace_seconds}", _escape(job.experiment), "--try_load_latest_save",
               *map(_escape, flags)]  # fmt: skip
    container = {"name": "pytorch", "image": job.image, "workingDir": job.workdir, "command": command}
    container |= {"env": env} if env else {}
    container |= {"ports": [{"name": "c10d", "containerPort": job.port}], "resources": resources}
    if job.volume:
        container["volumeMounts"] = [{"name": "shared", "mountPath": job.volume.split(":", 1)[1]}]
    return container


def _pod(job: K8sJob, container: dict, restart: str | None, **extra) -> dict:
    spec = {**extra, **({"restartPolicy": restart} if restart else {}),
            "terminationGracePeriodSeconds": job.grace_seconds, "containers": [container]}  # fmt: skip
    if job.volume:
        claim = job.volume.split(":", 1)[0]
        spec["volumes"] = [{"name": "shared", "persistentVolumeClaim": {"claimName": claim}}]
    return spec


def indexed_job(job: K8sJob, flags: list[str]) -> list[dict]:
    """The headless Service and the Indexed Job."""
    meta = {"name": job.name, "namespace": job.namespace}
    index = {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
        "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}  # fmt: skip
    env = [index, {"name": "MASTER_ADDR", "value": f"{job.name}-0.{job.name}"},
           {"name": "MASTER_PORT", "value": str(job.port)}]  # fmt: skip
    torchrun = [f"--nnodes={job.nodes}", f"--nproc_per_node={job.procs}", "--node_rank=$(JOB_COMPLETION_INDEX)",
                "--master_addr=$(MASTER_ADDR)", "--master_port=$(MASTER_PORT)"]  # fmt: skip
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": meta,
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": {"job-name": job.name},
                 "ports": [{"name": "c10d", "port": job.port}]},
    }  # fmt: skip
    pod = _pod(job, _container(job, flags, torchrun, env), "Never", subdomain=job.name)
    spec = {
        "completionMode": "Indexed", "completions": job.nodes, "parallelism": job.nodes,
        "backoffLimit": job.backoff_limit,
        "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
        "template": {"metadata": {"labels": {"job-name": job.name}}, "spec": pod},
    }  # fmt: skip
    return [service, {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec}]


def pytorch_job(job: K8sJob, flags: list[str]) -> list[dict]:
    """The Kubeflow PyTorchJob: the operator sets torchrun's PET_* variables (ranks, master address)."""
    template = {"spec": _pod(job, _container(job, flags, [], []), None)}  # the replicas' restartPolicy rules
    replicas = {"Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": template}}
    if job.nodes > 1:
        replicas["Worker"] = {"replicas": job.nodes - 1, "restartPolicy": "OnFailure", "template": template}
    spec = {"nprocPerNode": str(job.procs), "runPolicy": {"cleanPodPolicy": "None", "backoffLimit": job.backoff_limit},
            "pytorchReplicaSpecs": replicas}  # fmt: skip
    meta = {"name": job.name, "namespace": job.namespace}
    return [{"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": meta, "spec": spec}]


def manifests(job: K8sJob, flags: list[str]) -> list[dict]:
    """The manifests of `job` (--kind)."""
    if job.volume is not None and (":" not in job.volume or not job.volume.split(":", 1)[1].startswith("/")):
        raise ConfigError(f"--volume {job.volume}: use CLAIM:/MOUNT/PATH, e.g. ckpt-pvc:/ckpt")
    return indexed_job(job, flags) if job.kind == "job" else pytorch_job(job, flags)


def render(job: K8sJob, flags: list[str]) -> str:
    """The manifests as one YAML stream."""
    return yaml.safe_dump_all(manifests(job, flags), sort_keys=False, allow_unicode=True)


def run(job: K8sJob, flags: list[str]) -> None:
    """Print the manifests, or apply them."""
    text = render(job, flags)
    if not job.submit or job.dry_run:
        print(text, end="")
        return
    result = subprocess.run(["kubectl", "apply", "-f", "-"], input=text, text=True)
    sys.exit(result.returncode)


def main(argv: list[str] | None = None) -> None:
    launch(argv, lambda own: tyro.cli(K8sJob, args=own, description=__doc__), run)


if __name__ == "__main__":
    main()
