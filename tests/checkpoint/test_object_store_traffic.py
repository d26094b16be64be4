"""What an object store receives and serves per checkpoint save and load (moto's S3, body bytes counted):
a save sends each byte once and reads nothing back; a load reads at most 1.1x the checkpoint's bytes."""

import fsspec
import pytest

from olmo_fn.checkpoint import load_checkpoint, save_checkpoint, storage
from tests.checkpoint import servers
from tests.checkpoint.helpers import (
    assert_same_model,
    assert_same_optim,
    config_dict,
    fresh,
    tiny_cfg,
    trained,
)


@pytest.fixture(scope="module")
def s3():
    with servers.counting_moto_server() as (url, counter):
        fsspec.config.conf["s3"] = {"endpoint_url": url, "key": "testing", "secret": "testing"}
        fsspec.filesystem("s3", skip_instance_cache=True).mkdir("traffic")
        yield "s3://traffic/run", counter
        fsspec.config.conf.pop("s3", None)


@pytest.mark.parametrize("sharded", [False, True])
def test_save_sends_each_byte_once_and_load_reads_at_most_1_1x(s3, sharded, capsys):
    folder, counter = s3
    cfg = tiny_cfg(
        d_model=128, n_heads=4, n_kv_heads=4, mlp_hidden_size=512, vocab_size=2000, embedding_size=2048
    )
    model, opt = trained(cfg, steps=1)
    counter.reset()
    path = save_checkpoint(
        folder, 1 + sharded, model, opt, {"step": 1}, config_dict(cfg), sharded=sharded, keep=-1
    )
    saved = dict(counter.__dict__)
    files = storage.list_files(path)
    size = sum(files.values())  # every file of the checkpoint, manifest included
    assert size > 3_000_000
    counter.reset()
    model2, opt2 = fresh(cfg)
    load_checkpoint(path, model2, opt2)
    loaded = dict(counter.__dict__)
    assert_same_model(model, model2)
    assert_same_optim(model, opt, model2, opt2)
    with capsys.disabled():
        kind = "sharded" if sharded else "unsharded"
        print(f"\n{kind} checkpoint of {size} bytes in {len(files)} files: save received "
              f"{saved['received'] / size:.4f}x and served {saved['served'] / size:.4f}x; load served "
              f"{loaded['served'] / size:.4f}x and received {loaded['received'] / size:.4f}x")  # fmt: skip
    assert size <= saved["received"] <= 1.001 * size  # each byte once (plus nothing but pointer files)
    assert saved["served"] <= 0.01 * size  # nothing is read back to checksum it
    assert loaded["served"] <= 1.1 * size
    assert loaded["received"] <= 0.001 * size
