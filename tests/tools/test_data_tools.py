"""The data tools: --help, one-line errors, and inspect_data showing exactly a batch of the original order."""

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from tokenizers import Tokenizer, models

from olmo_fn.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "fixtures" / "original_olmo" / "data"
TOOLS = ["prepare_data", "prepare_sft_data", "inspect_data", "bench"]


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", TOOLS)
def test_help(name, capsys, monkeypatch):
    import tyro

    tool = load_tool(name)
    args = ["data", "--help"] if name == "bench" else ["--help"]
    monkeypatch.setattr(sys, "argv", [name, *args])
    with pytest.raises(SystemExit) as exit_info:
        tool.main() if name == "bench" else tyro.cli(getattr(tool, name))
    assert exit_info.value.code == 0
    assert "--" in capsys.readouterr().out


def test_user_errors_are_one_line_without_traceback(tmp_path):
    cmd = [sys.executable, str(ROOT / "tools" / "prepare_data.py"), "--inputs", str(tmp_path / "nope.txt")]
    cmd += ["--tokenizer", str(tmp_path / "t.json"), "--out-dir", str(tmp_path / "out")]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1
    message = f"error: {tmp_path / 't.json'}: tokenizer file not found; give a tokenizers JSON file"
    assert result.stderr.strip().splitlines() == [message]


def test_tokenizer_training_shows_each_stage_with_its_counts(tmp_path, capsys):
    docs = [
        "the quick brown fox jumps over the lazy dog " * 5,
        "pack my box with five dozen liquor jugs " * 5,
    ]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    tool = load_tool("prepare_data")
    args = dict(
        inputs=[str(tmp_path / "docs.jsonl")], tokenizer=str(tmp_path / "tok.json"), train_vocab_size=512
    )
    tool.prepare_data(**args, out_dir=str(tmp_path / "out"))
    err = capsys.readouterr().err
    chars = sum(map(len, docs))
    assert re.search(r"tokenizer: reading documents: .*\b2 docs", err), err
    lines = [line.split("\r")[-1] for line in err.splitlines()]
    read = lines.index(
        f"tokenizer: read 2 documents ({chars:,} characters); learning merges up to 512 tokens"
    )
    size = Tokenizer.from_file(str(tmp_path / "tok.json")).get_vocab_size()
    assert re.fullmatch(rf"tokenizer: {size:,} tokens learned in \d+\.\d s", lines[read + 1]), lines[read + 1]
    tool.prepare_data(**args, out_dir=str(tmp_path / "out2"), overwrite=True, progress=False)
    assert "tokenizer:" not in capsys.readouterr().err


def save_folder(tmp_path):
    """A run folder like the original's: config.yaml and train_data/global_indices.npy (epoch 0, seed 1)."""
    vocab = {f"w{i}": i for i in range(250)}
    Tokenizer(models.WordLevel(vocab, unk_token="w2")).save(str(tmp_path / "tok.json"))
    config = {
        "seed": 1,
        "global_train_batch_size": 4,
        "model": {"max_sequence_length": 64, "vocab_size": 250},
        "tokenizer": {"identifier": str(tmp_path / "tok.json")},
        "data": {
            "paths": [str(DATA / "part-0.npy"), str(DATA / "part-1.npy")],
            "drop_last": True,
            "pad_direction": "right",
            "custom_dataset": None,
        },
    }
    folder = tmp_path / "run"
    (folder / "train_data").mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "train_data" / "global_indices.npy").write_bytes(
        (DATA / "global_indices_seed1_ep0_G4.npy").read_bytes()
    )
    return folder


def test_inspect_shows_the_batch_of_the_original_order(tmp_path, capsys):
    folder = save_folder(tmp_path)
    instances = load_tool("inspect_data").inspect_data(batch=2, save_folder=str(folder))
    order = np.fromfile(DATA / "global_indices_seed1_ep0_G4.npy", dtype=np.uint32)
    assert [i["index"] for i in instances] == order[8:12].tolist() == [15, 3, 28, 19]
    raw1 = np.fromfile(DATA / "part-1.npy", dtype=np.uint16)
    assert instances[2]["input_ids"] == raw1[(28 - 21) * 64 : (28 - 20) * 64].tolist()
    assert instances[2]["metadata"] == {"path": str(DATA / "part-1.npy")}
    assert instances[2]["text"] == " ".join(f"w{t}" for t in instances[2]["input_ids"])
    out = capsys.readouterr().out
    assert "=== step 3 (epoch 0, batch 2), instance 2: index 28" in out and "text: w" in out


def test_inspect_json_from_the_command_line(tmp_path):
    folder = save_folder(tmp_path)
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "inspect_data.py"),
        "--save-folder",
        str(folder),
        "--batch",
        "8",
    ]
    result = subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=True)
    instances = json.loads(result.stdout)
    assert [i["index"] for i in instances] == [10, 5, 8, 32]


def test_inspect_an_experiment_computes_the_order(tmp_path):
    (tmp_path / "exp.py").write_text(
        "from dataclasses import dataclass, field\n"
        "from olmo_fn.config import DataConfig\n"
        "@dataclass\n"
        "class Model:\n    max_sequence_length: int = 64\n    vocab_size: int = 250\n"
        "@dataclass\n"
        "class Train:\n"
        f"    data: DataConfig = field(default_factory=lambda: DataConfig(paths={[str(DATA / 'part-0.npy'), str(DATA / 'part-1.npy')]!r}, drop_last=True))\n"
        "    model: Model = field(default_factory=Model)\n    seed: int = 1\n    global_train_batch_size: int = 4\n"
        "def config():\n    return Train()\n"
    )
    tool = load_tool("inspect_data")
    epoch1 = np.fromfile(DATA / "global_indices_seed1_ep1_G4.npy", dtype=np.uint32)
    instances = tool.inspect_data(batch=1, experiment=str(tmp_path / "exp.py"), epoch=1, as_json=True)
    assert [i["index"] for i in instances] == epoch1[4:8].tolist()
    with pytest.raises(ConfigError, match="exactly one of"):
        tool.inspect_data(batch=0)
