"""tools/download_checkpoints.py against a local HTTP server serving a checkpoint the test made."""

import dataclasses
import importlib.util
import os
import re
from pathlib import Path

import pytest

from olmo_fn.checkpoint.download import download
from olmo_fn.errors import CheckpointError, ConfigError
from tests.checkpoint import servers

ROOT = Path(__file__).resolve().parents[2]


def _main():
    spec = importlib.util.spec_from_file_location("dl", ROOT / "tools" / "download_checkpoints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture
def served(tmp_path):
    remote = tmp_path / "remote" / "run1" / "step1000-unsharded"
    remote.mkdir(parents=True)
    files = {
        "config.yaml": b"model: {d_model: 64}\n",
        "model.safetensors": os.urandom(300_000),
        "train.pt": os.urandom(5000),
    }
    for name, data in files.items():
        (remote / name).write_bytes(data)
    with servers.http_server(tmp_path / "remote") as server:
        csv = tmp_path / "OLMo-test.csv"
        csv.write_text(
            f"Step,Checkpoint Directory\n1000,{server.url}/run1/step1000-unsharded/\n2000,{server.url}/run1/nothing/\n"
        )
        yield server, str(csv), files, tmp_path / "save"


def test_list_and_both_spellings_download_every_existing_file(served, capsys):
    server, csv, files, save = served
    _main()(["list", csv])
    assert "1000\t" in capsys.readouterr().out
    _main()([csv, "--save-dir", str(save), "--step", "1000"])  # the original script's spelling
    got = {p.name: p.read_bytes() for p in (save / "step1000").iterdir()}
    assert got == files
    server.requests.clear()
    _main()(["download", csv, "--step", "1000", "--save-dir", str(save)])  # complete files are skipped
    assert server.requests == []


def test_resume_partial_file_and_retry_transient_errors(served):
    server, csv, files, save = served
    target = save / "step1000"
    target.mkdir(parents=True)
    (target / "model.safetensors.part").write_bytes(files["model.safetensors"][:100_000])
    server.fail = [503, 503]  # the first two requests fail
    download(csv, "1000", str(save), backoff=0.01)
    assert (target / "model.safetensors").read_bytes() == files["model.safetensors"]
    assert ("/run1/step1000-unsharded/model.safetensors", "bytes=100000-") in server.requests
    assert not list(target.glob("*.part"))


def test_errors(served):
    server, csv, files, save = served
    with pytest.raises(ConfigError, match="step 5 is not in the CSV"):
        download(csv, "5", str(save))
    with pytest.raises(CheckpointError, match="none of"):
        download(csv, "2000", str(save))
    server.fail = [500] * 10
    with pytest.raises(CheckpointError, match=r"manifest\.json: failed 2 times \(HTTP 500\).*--attempts"):
        download(csv, "1000", str(save), attempts=2, backoff=0.01)
    evil = Path(csv).with_name("evil.csv")
    evil.write_text(f"Step,Checkpoint Directory\n../../etc,{server.url}/run1/step1000-unsharded/\n")
    with pytest.raises(ConfigError, match="not a plain number"):
        download(str(evil), "../../etc", str(save))
    assert not save.exists()


def test_a_step_listed_twice_names_both_folders_and_takes_the_one_asked(served):
    server, csv, files, save = served
    twice = Path(csv).with_name("twice.csv")
    other = f"{server.url}/run1/step1000-unsharded-copy/"
    twice.write_text(f"Step,Checkpoint Directory\n1000,{server.url}/run1/step1000-unsharded/\n1000,{other}\n")
    with pytest.raises(ConfigError, match=r"step 1000 is listed 2 times, at .* and .*; pass --directory"):
        download(str(twice), "1000", str(save))
    assert not save.exists()
    download(str(twice), "1000", str(save), directory=f"{server.url}/run1/step1000-unsharded/")
    assert {p.name for p in (save / "step1000").iterdir()} == set(files)


def test_retries_are_announced(served, capsys):
    server, csv, files, save = served
    server.fail = [503]
    download(csv, "1000", str(save), backoff=0.01)
    assert re.search(r"/manifest\.json: HTTP 503; retrying in 0\.0\d+ s \(1/4\)", capsys.readouterr().err)


def test_an_olmo_fn_checkpoint_over_http_arrives_whole_and_loads(tmp_path):
    from olmo_fn.checkpoint import load_checkpoint, model_config_of_checkpoint
    from olmo_fn.model import Transformer
    from olmo_fn.train import train
    from tests.train.conftest import tiny_config

    cfg = tiny_config(
        tmp_path, max_duration="1", save_interval=1, save_interval_unsharded=1, eval_interval=None
    )
    train(dataclasses.replace(cfg, save_folder=str(tmp_path / "remote" / "run")))
    with servers.http_server(tmp_path / "remote") as server:
        csv = tmp_path / "mine.csv"
        csv.write_text(
            f"Step,Checkpoint Directory\n1,{server.url}/run/step1/\n2,{server.url}/run/step1-unsharded/\n"
        )
        for step in ("1", "2"):
            (path,) = {
                str(Path(p).parent)
                for p in download(str(csv), step, str(tmp_path / "got"))
                if p.endswith("manifest.json")
            }
            load_checkpoint(path, Transformer(model_config_of_checkpoint(path)), None)
