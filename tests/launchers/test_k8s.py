"""launchers/k8s.py: its manifests pass Kubernetes' strict schemas (and the PyTorchJob schema generated from
the Kubeflow Training SDK), which reject what a cluster would; an Indexed Job's pods, run here with the
environment each would get, train, stop on SIGTERM to one pod (an eviction), resume as replacement pods and
end bitwise equal to `torchrun --standalone` of the same flags."""

import copy
import json
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

import launchers.k8s as k8s
from launchers.k8s import K8sJob, manifests
from launchers.k8s_schema import SCHEMA, check, generate
from tests.launchers.pods import ROOT, expand, start_pods
from tests.launchers.reference import STEPS, assert_equal_to_reference
from tests.launchers.test_launchers import docstring_command


@pytest.mark.parametrize("kind", ["job", "pytorchjob"])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {
            "nodes": 4,
            "gpus_per_node": 8,
            "volume": "ckpt:/ckpt",
            "cpus_per_node": "32",
            "memory_per_node": "400Gi",
        },
    ],
    ids=["cpu", "gpu"],
)
def test_manifests_pass_the_strict_schemas(kind, options):
    docs = manifests(K8sJob("experiments/olmo_tiny.py", kind=kind, **options), ["--run_name=$(HOME) a b"])
    assert [check(doc) for doc in docs] == [[]] * len(docs)
    container = json.dumps(docs)
    assert ("nvidia.com/gpu" in container) == bool(options.get("gpus_per_node"))


def _mutated(doc: dict, path: tuple, value) -> dict:
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


CONTAINER = ("spec", "template", "spec", "containers", 0)
MASTER = ("spec", "pytorchReplicaSpecs", "Master", "template", "spec", "containers", 0)


@pytest.mark.parametrize(
    "kind,path,value,says",
    [
        ("job", ("spec", "completions"), "2", "'2' is not of type 'integer'"),
        ("job", (*CONTAINER, "commmand"), ["true"], "'commmand' was unexpected"),
        ("job", (*CONTAINER, "resources", "limits"), "4", "'4' is not of type 'object'"),
        ("pytorchjob", ("spec", "pytorchReplicaSpecs", "Worker", "replicas"), "1", "'1' is not of type 'integer'"),
        ("pytorchjob", ("spec", "nprocPerNod"), "1", "'nprocPerNod' was unexpected"),
        ("pytorchjob", ("spec", "runPolicy", "backoffLimit"), "3", "'3' is not of type 'integer'"),
        ("pytorchjob", (*MASTER, "imagee"), "x", "'imagee' was unexpected"),
    ],
)  # fmt: skip
def test_the_schemas_reject_what_a_cluster_would(kind, path, value, says):
    doc = manifests(K8sJob("experiments/olmo_tiny.py", nodes=2, kind=kind), [])[-1]
    assert check(doc) == []
    errors = check(_mutated(doc, path, value))
    assert any(says in e for e in errors), errors


def test_the_kept_pytorchjob_schema_is_what_the_sdk_models_give():
    assert json.loads(SCHEMA.read_text()) == generate()


def test_kubernetes_expansion_leaves_the_flags_as_given():
    flags = ["--run_name=$(HOME) $$ $HOME * ü, [x] 'q' \"d\"", "--data.paths=[a.npy,b.npy]"]
    (_, job) = manifests(K8sJob("experiments/olmo_tiny.py", nodes=2), flags)
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert [expand(a, {"HOME": "/root"}) for a in command[-2:]] == flags
    assert (
        expand(command[command.index("--node_rank=$(JOB_COMPLETION_INDEX)")], {"JOB_COMPLETION_INDEX": "1"})
        == "--node_rank=1"
    )


def test_the_docstring_command_runs_as_written():
    cmd = docstring_command(k8s)
    assert cmd[:2] == ["python", "launchers/k8s.py"]
    out = subprocess.run([sys.executable, *cmd[1:]], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert [check(doc) for doc in yaml.safe_load_all(out.stdout)] == [[], []]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _steps(run) -> list[int]:
    path = run / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [r["step"] for r in rows if "train/CrossEntropyLoss" in r]


def test_pods_train_stop_on_an_eviction_resume_and_equal_standalone_torchrun(reference, tmp_path):
    run = tmp_path / "shared" / "run"
    job = K8sJob(
        "experiments/olmo_tiny.py",
        nodes=2,
        procs_per_node=2,
        port=_free_port(),
        volume=f"ckpt:{tmp_path / 'shared'}",
    )
    (_, indexed) = manifests(job, [*reference["flags"], f"--save_folder={run}"])
    pods = start_pods(indexed, tmp_path)
    deadline = time.monotonic() + 180
    while len(_steps(run)) < 3 and time.monotonic() < deadline and all(p.poll() is None for p in pods):
        time.sleep(0.2)
    pods[1].send_signal(signal.SIGTERM)  # the kubelet evicting pod 1: SIGTERM to its first process, torchrun
    codes = [p.wait(timeout=120) for p in pods]
    logs = "".join((tmp_path / f"pod-{i}.log").read_text() for i in range(2))
    assert all(code != 0 for code in codes), codes  # failed pods: the Job starts replacements
    stopped = int(re.search(r"\[step (\d+)\] stopped by SIGTERM", logs).group(1))
    assert 3 <= stopped < STEPS
    codes = [p.wait(timeout=300) for p in start_pods(indexed, tmp_path)]  # the replacement pods
    logs = "".join((tmp_path / f"pod-{i}.log").read_text() for i in range(2))
    assert codes == [0, 0], logs[-3000:]
    assert _steps(run) == list(range(1, STEPS + 1))  # each step trained once
    assert_equal_to_reference(run, reference["reference"])
