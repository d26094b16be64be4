"""Sharded checkpoints across world sizes (gloo, CPU), and a writer killed with SIGKILL in the middle of saves."""

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pytest
import torch

from olmo_fn.checkpoint import (
    find_latest,
    load_checkpoint,
    model_config_of_checkpoint,
    save_checkpoint,
    storage,
)
from olmo_fn.checkpoint.storage import read_pointer
from olmo_fn.model import Transformer
from tests.checkpoint import servers
from tests.checkpoint.helpers import (
    assert_same_model,
    assert_same_optim,
    config_dict,
    tiny_cfg,
    trained,
    trainer_state,
)
from tests.checkpoint.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).parent / "ckpt_worker.py"


def test_saved_by_3_loaded_by_1_and_4(loads):
    """A sharded checkpoint of 3 FSDP ranks (no dimension splits evenly: 32 -> 11, 11, 10): one process loads
    it as the unsharded one, and 4 ranks (two nodes of two, the launch of test_one_reader_per_node...) load it;
    each rank checks its data-loader state and rank 0 the full weights and optimizer state against the
    unsharded checkpoint, bit for bit. (Sharded checkpoints of 2 ranks loaded by 1, 2 and 4:
    test_load_everywhere.py.)"""
    tmp_path = loads["sharded"]
    shards = os.listdir(tmp_path / "step2" / "model_and_optim")
    assert ".metadata" in shards and {s.split("_")[2] for s in shards if s.endswith(".distcp")} == {
        "0",
        "1",
        "2",
    }
    assert sorted(os.listdir(tmp_path / "step2" / "train")) == [
        f"rank{r}.{e}" for r in (0, 1, 2) for e in ("json", "safetensors")
    ]
    cfg = tiny_cfg()
    one = [Transformer(cfg) for _ in range(2)]
    opts = [torch.optim.AdamW(m.parameters()) for m in one]
    loaded = load_checkpoint(str(tmp_path / "step2"), one[0], opts[0])
    load_checkpoint(str(tmp_path / "step2-unsharded"), one[1], opts[1])
    assert_same_model(one[0], one[1])
    assert_same_optim(one[0], opts[0], one[1], opts[1])
    assert loaded.trainer_state["world_size"] == 3 and loaded.trainer_state["data_loader"] == {"rank": 0}
    assert "LOADED OK world=4" in loads["stdout"][2]


def _check_folder(folder: Path):
    latest = find_latest(str(folder))
    assert latest is not None
    for pointer in ("latest", "latest-unsharded"):
        target = read_pointer(str(folder), pointer)
        if target is not None:
            assert (folder / target / "manifest.json").exists(), f"{pointer} -> {target} is incomplete"
    cfg = model_config_of_checkpoint(latest)
    model = Transformer(cfg)
    load_checkpoint(latest, model, torch.optim.AdamW(model.parameters()))
    return latest


def test_sigkill_mid_save_leaves_a_loadable_latest(tmp_path):
    rng = random.Random(0)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    seen, pid = set(), None
    proc = subprocess.Popen(  # forks each round's writer (killed by SIGKILL) from one imported process
        [sys.executable, str(WORKER), "writers", str(tmp_path)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        for round_ in range(3):
            proc.stdin.write("go\n")
            proc.stdin.flush()
            saves = 0
            while saves < 2 or pid is None:  # a couple of saves, then a kill somewhere inside the next ones
                line = proc.stdout.readline()
                assert line, "writer died"
                saves += line.startswith("saved")
                pid = int(line.split()[1]) if line.startswith("writer") else pid
            time.sleep(rng.uniform(0.0, 0.3))
            os.kill(pid, signal.SIGKILL)
            while not line.startswith(f"killed {pid}"):  # its parent saw it end
                line = proc.stdout.readline()
                assert line, "the forking process died"
            pid = None
            seen.add(_check_folder(tmp_path))
            leftovers = [p.name for p in tmp_path.iterdir() if "tmp" in p.name]
            print(f"round {round_}: latest {sorted(seen)}, unfinished {leftovers}")
    finally:
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(pid, signal.SIGKILL)  # a round that failed leaves no writer behind
        proc.stdin.close()
        status = proc.wait(timeout=60)
        proc.stdout.close()
    assert status == 0 and len(seen) >= 1


def _fingerprint(model, opt) -> tuple[float, float]:
    """What ckpt_worker's load_full prints: the sum of the weights and of |exp_avg|."""
    weights = sum(p.double().sum().item() for p in model.parameters())
    return weights, sum(opt.state[p]["exp_avg"].double().abs().sum().item() for p in model.parameters())


def _agents(nodes: int, per_node: int, args: list[str], env: dict) -> str:
    """torchrun agents on this machine as `nodes` nodes of `per_node` processes each (static rendezvous),
    running ckpt_worker.py with args; their stdout together."""
    port = free_port()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                f"--nnodes={nodes}",
                f"--node_rank={i}",
                f"--nproc_per_node={per_node}",
                "--master_addr=127.0.0.1",
                f"--master_port={port}",
                str(WORKER),
                *args,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )  # fmt: skip
        for i in range(nodes)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out[-2000:] + err[-3000:]
    return "".join(out for out, _ in outs)


@pytest.fixture(scope="module")
def loads(tmp_path_factory) -> dict:
    """Two launches, with a moto S3 server counting the bytes it serves: one node of 3 ranks saves a sharded
    (and an unsharded) checkpoint (ckpt_worker save), then loads an unsharded checkpoint from S3 whose
    embedding of 101 rows no world size divides; two nodes of 2 ranks load the 3-rank sharded checkpoint,
    then the S3 one."""
    tmp = tmp_path_factory.mktemp("loads")
    sharded = tmp / "sharded"
    cfg = tiny_cfg(embedding_size=101)
    model, opt = trained(cfg, steps=2)
    out = {"sharded": sharded, "expected": _fingerprint(model, opt), "stdout": {}, "prints": {}, "served": {}}
    with servers.counting_moto_server() as (url, counter):
        fsspec.config.conf["s3"] = {"endpoint_url": url, "key": "testing", "secret": "testing"}
        try:
            fsspec.filesystem("s3", skip_instance_cache=True).mkdir("nodes")
            path = save_checkpoint("s3://nodes/run", 2, model, opt, trainer_state(2), config_dict(cfg),
                                   sharded=False, keep=1)  # fmt: skip
            size = sum(storage.list_files(path).values())
        finally:
            fsspec.config.conf.pop("s3", None)
        env = {
            **os.environ,
            "FSSPEC_S3_ENDPOINT_URL": url,
            "FSSPEC_S3_KEY": "testing",
            "FSSPEC_S3_SECRET": "testing",
        }
        for nodes, per_node, first in ((1, 3, ["save", str(sharded)]), (2, 2, ["load", str(sharded)])):
            counter.reset()
            out["stdout"][nodes] = _agents(nodes, per_node, [*first, "load_full", path], env)
            out["served"][nodes] = counter.served / size
            number = r"([0-9.]+e[+-]\d+)"
            found = re.findall(rf"FINGERPRINT rank=\d+ {number} {number}", out["stdout"][nodes])
            out["prints"][nodes] = [tuple(map(float, f)) for f in found]
    return out


def test_one_reader_per_node_reads_storage_once_per_node(loads):
    """Ranks load an unsharded checkpoint from S3: as one node of 3 ranks the store serves it once, as two
    nodes of two ranks twice (local rank 0 of each node reads, its node's ranks receive)."""
    served = loads["served"]
    print(f"bytes served per load / checkpoint bytes: one node {served[1]:.3f}, two nodes {served[2]:.3f}")
    assert len(loads["prints"][2]) == 4
    assert all(got == pytest.approx(loads["expected"], rel=1e-9) for got in loads["prints"][2])
    assert 0.99 < served[1] < 1.1
    assert 1.98 < served[2] < 2.2


def test_uneven_shards_on_three_ranks(loads):
    """Three FSDP ranks split no dimension of the model evenly (32 -> 11, 11, 10; an embedding of 101 rows);
    an unsharded checkpoint (read from S3, by one rank) still lands exactly, weights and optimizer state.
    Four ranks split the 101 rows unevenly too (26, 25, 25, 25; the two-node load above)."""
    assert len(loads["prints"][1]) == 3
    assert all(got == pytest.approx(loads["expected"], rel=1e-9) for got in loads["prints"][1])
