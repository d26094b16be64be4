"""Run an Indexed Job's pods on this machine: each pod's container command as one process, with the
environment Kubernetes would give it (its completion index; `$(VAR)` and `$$` expanded as the kubelet
does), pod 0's cluster DNS name resolving to the loopback address, the image's working folder being this
checkout."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INDEX_FIELD = "metadata.annotations['batch.kubernetes.io/job-completion-index']"


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion of a command argument: $(NAME) of a defined variable becomes its value, $$
    becomes $, anything else stays as written."""
    out, i = [], 0
    while i < len(text):
        end = text.find(")", i)
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("$(", i) and end != -1 and text[i + 2 : end] in env:
            out.append(env[text[i + 2 : end]])
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def pod_env(container: dict, index: int, hosts: dict[str, str]) -> dict[str, str]:
    """The variables a container of pod `index` declares, with cluster host names mapped by `hosts`."""
    env = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = hosts.get(var["value"], var["value"])
        elif var["valueFrom"]["fieldRef"]["fieldPath"] == INDEX_FIELD:
            env[var["name"]] = str(index)
    return env


def start_pods(job: dict, logs: Path) -> list[subprocess.Popen]:
    """Start every pod of the Indexed Job `job` (a batch/v1 Job manifest); logs/pod-{i}.log each."""
    spec = job["spec"]
    name = job["metadata"]["name"]
    container = spec["template"]["spec"]["containers"][0]
    hosts = {f"{name}-{i}.{name}": "127.0.0.1" for i in range(spec["completions"])}
    pods = []
    for index in range(spec["completions"]):
        env = pod_env(container, index, hosts)
        command = [expand(arg, env) for arg in container["command"]]
        command[0] = sys.executable if command[0] == "python" else command[0]  # the image's python
        log = open(logs / f"pod-{index}.log", "a")  # noqa: SIM115 (closed with the process)
        pods.append(
            subprocess.Popen(
                command, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
            )
        )
    return pods
