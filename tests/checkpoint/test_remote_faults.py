"""Remote faults: training, saving, resuming and reading data through a proxy that injects 500s, 503s,
timeouts, connection resets, truncated bodies and server restarts at random requests (tests/checkpoint/
fault_proxy.py), in front of S3 (moto), GCS (the emulator) and a read-only HTTP server. Each campaign injects
at least TARGET faults of every kind; every resume must end bitwise equal to a run that never saw a fault.

olmo_fn's own retries are what is tested: botocore's are turned off, gcsfs' (not configurable) waits are
shortened, client timeouts are short (TIMEOUT) so that a stalled request costs little.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import types
from pathlib import Path

import fsspec
import pytest
import torch

from olmo_fn.checkpoint import find_latest, load_checkpoint
from olmo_fn.errors import CheckpointError
from olmo_fn.run_context import Hooks
from olmo_fn.train import train
from tests.checkpoint import servers
from tests.checkpoint.fault_proxy import KINDS, FaultProxy
from tests.train.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]
TARGET = 20
TIMEOUT = 0.25
STEPS = 12
STOPS = (4, 8)  # the campaign run is stopped (SIGUSR1, as a scheduler does) after these steps and resumed


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setenv("OLMO_FN_REMOTE_ATTEMPTS", "12")
    monkeypatch.setenv("OLMO_FN_REMOTE_BACKOFF", "0.02")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The run no fault touches: its losses by step, and its checkpoints (all kept) for the HTTP campaign."""
    tmp = tmp_path_factory.mktemp("reference")
    cfg = _config(tmp, str(tmp / "run"))
    result = train(cfg)
    return tmp, _losses((tmp / "run" / "metrics.jsonl").read_text()), _params(result.model)


def _config(tmp, save_folder: str, data_root: str | None = None, **changes):
    cfg = tiny_config(tmp, save_folder=save_folder, max_duration=str(STEPS), eval_interval=None,
                      save_interval=4, save_interval_unsharded=2, save_num_checkpoints_to_keep=-1,
                      save_num_unsharded_checkpoints_to_keep=-1, **changes)  # fmt: skip
    if data_root is not None:  # the same token files, read from the store
        paths = [f"{data_root}/{os.path.basename(p)}" for p in cfg.data.paths]
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, paths=paths))
    return cfg


def _losses(text: str) -> dict[int, float]:
    rows = [json.loads(line) for line in text.splitlines()]
    return {r["step"]: r["train/CrossEntropyLoss"] for r in rows if "train/CrossEntropyLoss" in r}


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _stop_after(step: int | None) -> Hooks:
    def hook(run, batch, metrics):
        if run.state.step == step:
            os.kill(os.getpid(), signal.SIGUSR1)

    return Hooks(after_step=[hook])


def _assert_bitwise(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> None:
    assert expected.keys() == got.keys()
    for name, tensor in expected.items():
        assert torch.equal(tensor, got[name]), name


def _campaign(tmp, folder: str, data_root: str, proxy: FaultProxy, reference) -> None:
    """Train with stops and resumes through the faulty proxy; compare with the reference, bitwise."""
    _, ref_losses, ref_params = reference
    cfg = _config(tmp, folder, data_root, try_load_latest_save=True)
    for stop in (*STOPS, None):
        result = train(cfg, _stop_after(stop))
        assert result.stopped_by == (None if stop is None else "SIGUSR1")
    proxy.enabled = False
    fs, path = fsspec.core.url_to_fs(folder)
    assert _losses(fs.cat_file(f"{path}/metrics.jsonl").decode()) == ref_losses
    _assert_bitwise(ref_params, _params(result.model))
    summary = ", ".join(f"{k} {proxy.injected[k]}" for k in KINDS)
    print(f"\n{folder}: {proxy.requests} requests; injected and survived: {summary}")
    assert all(proxy.injected[k] >= TARGET for k in KINDS), summary


def _upload(local_dir, fs, path) -> None:
    for name in sorted(os.listdir(local_dir)):
        if name.endswith(".npy"):
            fs.put_file(str(local_dir / name), f"{path}/{name}")


@pytest.fixture
def s3_behind_proxy(tmp_path):
    (tmp_path / "moto").mkdir()
    with servers.moto_server(tmp_path / "moto") as backend, FaultProxy(backend, seed=1, rate=0.3) as proxy:
        options = {"endpoint_url": proxy.url, "key": "testing", "secret": "testing", "config_kwargs": {
            "read_timeout": TIMEOUT, "connect_timeout": TIMEOUT, "retries": {"total_max_attempts": 1}}}  # fmt: skip
        fsspec.config.conf["s3"] = options
        try:
            proxy.enabled = False
            fs = fsspec.filesystem("s3", skip_instance_cache=True)
            fs.mkdir("faults")
            yield proxy, fs, "s3://faults"
        finally:
            fsspec.config.conf.pop("s3", None)


def test_s3_campaign(s3_behind_proxy, reference, tmp_path):
    proxy, fs, bucket = s3_behind_proxy
    tiny_config(tmp_path, save_folder="unused")  # writes the token files
    _upload(tmp_path / "data", fs, "faults/data")
    proxy.enabled = True
    _campaign(tmp_path, f"{bucket}/run", f"{bucket}/data", proxy, reference)


async def _copy_then_delete(self, path1, path2, **kwargs):
    await self._cp_file(path1, path2)  # the emulator has no moveTo
    await self._rm_file(path1)


def _fast_sleep_module():
    """asyncio for gcsfs' retry module with its waits (1 s, 2 s, 4 s... not configurable) cut 50-fold."""
    shim = types.SimpleNamespace(**vars(asyncio))
    shim.sleep = lambda delay, *a, **k: asyncio.sleep(delay / 50, *a, **k)
    return shim


@pytest.fixture
def gcs_behind_proxy(tmp_path, monkeypatch):
    import gcsfs
    import gcsfs.retry

    monkeypatch.setattr(gcsfs.GCSFileSystem, "_mv_file", _copy_then_delete)
    monkeypatch.setattr(gcsfs.retry, "asyncio", _fast_sleep_module())
    (tmp_path / "gcs").mkdir()
    with (
        servers.gcs_emulator(tmp_path / "gcs", "faults") as backend,
        FaultProxy(backend, seed=2, rate=0.3) as proxy,
    ):
        options = {"endpoint_url": proxy.url, "token": "anon", "project": "test", "requests_timeout": TIMEOUT}
        fsspec.config.conf["gcs"] = fsspec.config.conf["gs"] = options
        try:
            proxy.enabled = False
            yield proxy, fsspec.filesystem("gs", skip_instance_cache=True), "gs://faults"
        finally:
            fsspec.config.conf.pop("gcs", None)
            fsspec.config.conf.pop("gs", None)


def test_gcs_campaign(gcs_behind_proxy, reference, tmp_path):
    proxy, fs, bucket = gcs_behind_proxy
    tiny_config(tmp_path, save_folder="unused")
    _upload(tmp_path / "data", fs, "faults/data")
    proxy.enabled = True
    _campaign(tmp_path, f"{bucket}/run", f"{bucket}/data", proxy, reference)


def test_http_campaign(reference, tmp_path):
    """Read-only: resume from each of the reference's checkpoints over HTTP (the server restarts mid-download
    here), token files read over HTTP too; every resumed run ends bitwise equal to the reference."""
    import aiohttp

    ref_dir, ref_losses, ref_params = reference
    fsspec.config.conf["http"] = {
        "client_kwargs": {"timeout": aiohttp.ClientTimeout(total=TIMEOUT * 5, sock_read=TIMEOUT)}
    }
    try:
        with (
            servers.http_server(ref_dir) as server,
            FaultProxy(server.url, seed=3, rate=0.3, uploads=False) as proxy,
        ):
            for i, name in enumerate(
                ("step2-unsharded", "step4", "step6-unsharded", "step8", "step10-unsharded")
            ):
                cfg = _config(tmp_path / str(i), str(tmp_path / str(i) / "run"), f"{proxy.url}/data",
                              load_path=f"{proxy.url}/run/{name}")  # fmt: skip
                result = train(cfg)
                start = int(name[4:].split("-")[0])
                losses = _losses((tmp_path / str(i) / "run" / "metrics.jsonl").read_text())
                assert losses == {s: v for s, v in ref_losses.items() if s > start}, name
                _assert_bitwise(ref_params, _params(result.model))
                if proxy.done():
                    break
        summary = ", ".join(f"{k} {proxy.injected[k]}" for k in KINDS)
        print(f"\nhttp: {proxy.requests} requests over {i + 1} resumes; injected and survived: {summary}")
        assert proxy.done(), summary
    finally:
        fsspec.config.conf.pop("http", None)


def test_a_save_the_store_keeps_refusing_fails_in_one_line_and_keeps_the_previous_checkpoint(
    s3_behind_proxy, tmp_path, monkeypatch
):
    proxy, fs, bucket = s3_behind_proxy
    monkeypatch.setenv("OLMO_FN_REMOTE_ATTEMPTS", "3")
    folder = f"{bucket}/refused"
    cfg = tiny_config(
        tmp_path, save_folder=folder, max_duration="4", eval_interval=None, save_interval_unsharded=2
    )

    def down_after_first(run, path):
        proxy.fail_uploads = True

    with pytest.raises(CheckpointError) as error:
        train(cfg, Hooks(after_save=[down_after_first]))
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{folder}: step4-unsharded was not saved (")
    assert "failed 3 times" in message and "ServiceUnavailable" in message
    assert message.endswith(
        f"nothing was published and the previous checkpoint {folder}/step2-unsharded is intact; "
        "when the store answers again, resume with --try_load_latest_save"
    )
    proxy.fail_uploads = False
    assert find_latest(folder) == f"{folder}/step2-unsharded"
    assert fs.cat_file("faults/refused/latest-unsharded").decode() == "step2-unsharded"
    from tests.checkpoint.helpers import fresh

    model, opt = fresh(cfg.model)
    assert load_checkpoint(f"{folder}/step2-unsharded", model, opt).trainer_state["step"] == 2
    result = train(dataclasses.replace(cfg, try_load_latest_save=True))
    assert result.state.step == 4 and find_latest(folder) == f"{folder}/step4-unsharded"


@pytest.mark.parametrize("ranks", [2, 4])
def test_on_several_ranks_a_refused_remote_save_stops_all_with_one_line(s3_behind_proxy, tmp_path, ranks):
    """Every rank learns that the store refused a shard and stops with the same line, none left waiting in
    a collective; `latest` still names the previous checkpoint (203 instances: the data does not divide)."""
    import subprocess
    import sys

    import numpy as np

    proxy, fs, bucket = s3_behind_proxy
    proxy.fail_uploads_to = f"/refused{ranks}/step4/"
    tokens = tmp_path / "tokens.npy"
    np.random.default_rng(0).integers(0, 4096, size=203 * 64).astype(np.uint16).tofile(tokens)
    folder = f"{bucket}/refused{ranks}"
    options = {"endpoint_url": proxy.url, "key": "testing", "secret": "testing",
               "config_kwargs": {"retries": {"total_max_attempts": 1}}}  # fmt: skip
    env = {**os.environ, "FSSPEC_S3": json.dumps(options), "OLMO_FN_REMOTE_ATTEMPTS": "3",
           "OLMO_FN_REMOTE_BACKOFF": "0.02"}  # fmt: skip
    flags = ["experiments/olmo_tiny.py", "--model.n_layers=1", "--model.d_model=64", "--model.n_heads=2",
             "--model.mlp_hidden_size=128", "--model.max_sequence_length=64", "--global_train_batch_size=4",
             "--device_train_microbatch_size=1", "--tracking.no-aim", "--tracking.progress-bar=False",
             "--no-eval_on_load", "--max_duration=4", "--save_interval=2", "--save_interval_unsharded=4",
             f"--data.paths=[{tokens}]", f"--save_folder={folder}"]  # fmt: skip
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
                          *flags], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert out.returncode != 0 and errors and set(errors) == {errors[0]}, out.stderr[-3000:]
    assert errors[0].startswith(f"error: {folder}: step4 was not saved ("), errors[0]
    assert errors[0].endswith(f"the previous checkpoint {folder}/step2 is intact; when the store answers again, "
                              "resume with --try_load_latest_save"), errors[0]  # fmt: skip
    workers = out.stderr.split("failed (exitcode")[0]
    assert "Traceback" not in workers, workers[-3000:]
    assert fs.cat_file(f"faults/refused{ranks}/latest").decode() == "step2"
    assert find_latest(folder) == f"{folder}/step2"
