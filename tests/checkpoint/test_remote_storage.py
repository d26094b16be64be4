"""Saving to and loading from s3:// (moto server), gs:// (GCS emulator) and http(s):// (Range server)."""

import os
import shutil

import fsspec
import pytest

from olmo_fn.checkpoint import detect_kind, find_latest, load_checkpoint, save_checkpoint
from tests.checkpoint import servers
from tests.checkpoint.helpers import (
    assert_same_model,
    assert_same_optim,
    config_dict,
    fresh,
    tiny_cfg,
    trained,
    trainer_state,
)

os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"  # read at gcsfs import (conftest sets it too)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with servers.moto_server(tmp_path_factory.mktemp("moto")) as url:
        conf = {"endpoint_url": url, "key": "testing", "secret": "testing"}
        fsspec.config.conf["s3"] = conf
        fsspec.filesystem("s3", skip_instance_cache=True).mkdir("ckpt-bucket")
        yield "s3://ckpt-bucket/run"
        fsspec.config.conf.pop("s3", None)


async def _copy_then_delete(self, path1, path2, **kwargs):
    """The emulator has no moveTo API; gcsfs would retry it for ~15 s per rename before falling back."""
    await self._cp_file(path1, path2)
    await self._rm_file(path1)


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    import gcsfs

    patch = pytest.MonkeyPatch()
    patch.setattr(gcsfs.GCSFileSystem, "_mv_file", _copy_then_delete)
    with patch.context(), servers.gcs_emulator(tmp_path_factory.mktemp("gcs"), "ckpt-gcs") as url:
        conf = {"endpoint_url": url, "token": "anon", "project": "test"}
        fsspec.config.conf["gcs"] = fsspec.config.conf["gs"] = conf
        yield "gs://ckpt-gcs/run"
        fsspec.config.conf.pop("gcs", None)
        fsspec.config.conf.pop("gs", None)


def _save_load_both_kinds(folder):
    cfg = tiny_cfg()
    model, opt = trained(cfg)
    for step in (1, 2):
        save_checkpoint(
            folder, step, model, opt, trainer_state(step), config_dict(cfg), sharded=False, keep=1
        )
        save_checkpoint(folder, step, model, opt, trainer_state(step), config_dict(cfg), sharded=True, keep=1)
    assert find_latest(folder) == f"{folder}/step2"
    fs, path = fsspec.core.url_to_fs(folder)
    fs.invalidate_cache()
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(path)) == [
        "latest",
        "latest-unsharded",
        "step2",
        "step2-unsharded",
    ]
    assert fs.cat_file(f"{path}/latest").decode() == "step2"
    for name in ("step2", "step2-unsharded"):
        model2, opt2 = fresh(cfg)
        loaded = load_checkpoint(f"{folder}/{name}", model2, opt2)
        assert_same_model(model, model2)
        assert_same_optim(model, opt, model2, opt2)
        assert loaded.trainer_state["step"] == 2 and loaded.config == config_dict(cfg)


def test_s3(s3):
    _save_load_both_kinds(s3)


def test_gcs(gcs):
    _save_load_both_kinds(gcs)


def test_http_read_only_with_range_requests(tmp_path):
    cfg = tiny_cfg()
    model, opt = trained(cfg)
    run = tmp_path / "run"
    save_checkpoint(str(run), 3, model, opt, trainer_state(3), config_dict(cfg), sharded=True, keep=1)
    save_checkpoint(str(run), 3, model, opt, trainer_state(3), config_dict(cfg), sharded=False, keep=1)
    with servers.http_server(tmp_path) as server:
        folder = f"{server.url}/run"
        assert find_latest(folder) == f"{folder}/step3"
        for name in ("step3", "step3-unsharded"):
            assert detect_kind(f"{folder}/{name}") == ("sharded" if name == "step3" else "unsharded")
            model2, opt2 = fresh(cfg)
            assert load_checkpoint(f"{folder}/{name}", model2, opt2).trainer_state["step"] == 3
            assert_same_model(model, model2)
            assert_same_optim(model, opt, model2, opt2)
    shutil.rmtree(run)


def test_a_training_run_on_s3_writes_its_checkpoints_and_metrics_jsonl_there(s3, tmp_path):
    import json

    from olmo_fn.train import train
    from tests.train.conftest import tiny_config

    folder = s3.replace("/run", "/train-run")
    cfg = tiny_config(tmp_path, save_folder=folder, max_duration="4", eval_interval=None)
    train(cfg)
    fs = fsspec.filesystem("s3")
    rows = [json.loads(line) for line in fs.cat_file(f"{folder}/metrics.jsonl").decode().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all("train/CrossEntropyLoss" in r for r in rows)
    assert find_latest(folder).endswith("step4-unsharded")
