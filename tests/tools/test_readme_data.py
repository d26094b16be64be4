"""The README's Data section: its commands run as written (from a folder holding the files they name); the
inspect_data one is a docstring example, which tests/tools/test_inspect_data.py runs."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import tyro

from olmo_fn.data.corpus import default_corpus
from tests.tools.test_data_tools import load_tool

ROOT = Path(__file__).resolve().parents[2]


def _commands() -> list[list[str]]:
    section = (ROOT / "README.md").read_text().split("\n## Data\n", 1)[1].split("\n## ", 1)[0]
    lines = [line.split("#")[0].split() for line in section.splitlines() if line.startswith("    python ")]
    return [words for words in lines if words]


def test_the_prepare_commands_run_as_written(tmp_path, monkeypatch):
    commands = {words[1]: words[2:] for words in _commands()}
    assert sorted(commands) == ["tools/inspect_data.py", "tools/prepare_data.py", "tools/prepare_sft_data.py"]
    inspect = " ".join(["python tools/inspect_data.py", *commands["tools/inspect_data.py"]])
    assert inspect in load_tool("inspect_data").__doc__  # run by test_the_docstring_examples_run_as_written
    shutil.copy(default_corpus().tokenizer_json, tmp_path / "tok.json")
    docs = [{"text": f"Document {i} says that the library reads token files."} for i in range(20)]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    chat = [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "It is 4."}]
    (tmp_path / "tulu.jsonl").write_text(json.dumps({"messages": chat}) + "\n")
    monkeypatch.chdir(tmp_path)
    for name in ("prepare_data", "prepare_sft_data"):
        tool = load_tool(name)
        tyro.cli(getattr(tool, name), args=commands[f"tools/{name}.py"])
    manifest = json.loads((tmp_path / "data/mine/manifest.json").read_text())
    assert manifest["documents"] == 20 and re.fullmatch(r"[0-9a-f]{64}", manifest["tokenizer_sha256"])
    mask = np.fromfile(tmp_path / "data/sft/label_mask.npy", dtype=np.bool_)
    assert len(mask) == 2048 and 0 < mask.sum() < 20  # the assistant's reply and its EOS only
