"""tools/convert_config.py: original YAML <-> olmo_fn config, with nothing that changes training lost.

Every run is a fresh process (mostly Python and torch starting up), so the file's runs start together, in two
waves (the second converts back what the first wrote): the docstring's two commands as written (its first,
OLMo-1B.yaml -> olmo-1b.yaml, is also the first half of OLMo-1B's round trip), OLMo 2 7B's YAML to olmo_fn's,
a recipe to an original config and original_config.py's --help; then both converted YAMLs back, and the
refusal to overwrite."""

import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from olmo_fn.config import TrainConfig
from olmo_fn.config_io import config_from_dict
from olmo_fn.original import read_original_config, train_config_from_original

ROOT = Path(__file__).resolve().parents[2]
OFFICIAL = ROOT / "tests" / "fixtures" / "official_configs"
TOOL = ROOT / "tools" / "convert_config.py"


def _run(args: list, cwd: Path) -> subprocess.CompletedProcess:
    (Path(cwd) / "checkpoints").mkdir(exist_ok=True)  # OLMo-1B's save_folder: ${path.choose:$SCRATCH_DIR/...}
    return subprocess.run(
        [sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120,
        env={**os.environ, "SCRATCH_DIR": str(cwd)},
    )  # fmt: skip


def _together(runs: dict) -> dict:
    """key -> _run(args, cwd) for each key -> (args, cwd) of `runs`, the processes started together."""
    with ThreadPoolExecutor(len(runs)) as pool:
        done = {key: pool.submit(_run, *call) for key, call in runs.items()}
        return {key: future.result() for key, future in done.items()}


def _docstring_commands() -> list[str]:
    doc = TOOL.read_text().split('"""')[1]
    return [line.split("#")[0].strip() for line in doc.splitlines() if line.strip().startswith("python ")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every run of this file, by name; "folder" the docstring's folder, "folder_7b" OLMo 2 7B's."""
    docs = tmp_path_factory.mktemp("docstring")
    for name in ("tools", "experiments"):
        (docs / name).symlink_to(ROOT / name)
    (docs / "OLMo-1B.yaml").write_bytes((OFFICIAL / "OLMo-1B.yaml").read_bytes())
    seven, other = tmp_path_factory.mktemp("olmo2_7b"), tmp_path_factory.mktemp("other")
    first = {
        **{command: (shlex.split(command)[1:], docs) for command in _docstring_commands()},
        "7b": ([TOOL, OFFICIAL / "OLMo2-7B-stage1.yaml", seven / "olmo_fn.yaml"], seven),
        "recipe": ([TOOL, ROOT / "experiments" / "olmo2_7b.py", other / "OLMo-2-7B.yaml"], other),
        "help": ([ROOT / "experiments" / "original_config.py", OFFICIAL / "OLMo2-7B-stage1.yaml", "--help"], other),
    }  # fmt: skip
    out = _together(first)
    second = {
        "back_1b": ([TOOL, docs / "olmo-1b.yaml", docs / "original.yaml"], docs),
        "back_7b": ([TOOL, seven / "olmo_fn.yaml", seven / "original.yaml"], seven),
        # no overwrite without --overwrite
        "refused": ([TOOL, OFFICIAL / "OLMo2-7B-stage1.yaml", seven / "olmo_fn.yaml"], seven),
    }  # fmt: skip
    return {**out, **_together(second), "folder": docs, "folder_7b": seven, "folder_other": other}


@pytest.mark.parametrize("name", ["OLMo-1B.yaml", "OLMo2-7B-stage1.yaml"])
def test_an_official_config_round_trips(name, runs, monkeypatch):
    if name == "OLMo-1B.yaml":  # the docstring's first command
        folder, out, back_out = runs["folder"], runs[_docstring_commands()[0]], runs["back_1b"]
        ours, written = folder / "olmo-1b.yaml", "olmo-1b.yaml"
    else:
        folder, out, back_out = runs["folder_7b"], runs["7b"], runs["back_7b"]
        ours = written = folder / "olmo_fn.yaml"
    assert out.returncode == 0, out.stderr
    assert "no effect here:" in out.stdout and f"wrote {written}" in out.stdout
    converted = config_from_dict(TrainConfig, yaml.safe_load(ours.read_text()))
    monkeypatch.setenv("SCRATCH_DIR", str(folder))
    assert converted == train_config_from_original(read_original_config((OFFICIAL / name).read_text()))[0]
    assert back_out.returncode == 0, back_out.stderr
    again = train_config_from_original(read_original_config((folder / "original.yaml").read_text()))[0]
    assert again == converted


def test_a_converted_config_is_not_overwritten(runs):
    refused, ours = runs["refused"], runs["folder_7b"] / "olmo_fn.yaml"
    assert (
        refused.returncode == 1
        and refused.stderr.strip() == f"error: {ours} exists; pass --overwrite to replace it"
    )


def test_a_recipe_becomes_an_original_config_the_original_loader_reads(runs):
    out = runs["recipe"]
    assert out.returncode == 0, out.stderr
    tree = read_original_config((runs["folder_other"] / "OLMo-2-7B.yaml").read_text())
    assert tree["model"]["d_model"] == 4096 and tree["optimizer"]["eps"] == 1e-8
    assert tree["fsdp"]["sharding_strategy"] == "FULL_SHARD" and tree["scheduler"]["units"] == "tokens"


def test_the_docstring_examples_as_written(runs):
    commands = _docstring_commands()
    assert len(commands) == 2
    for command in commands:
        out = runs[command]
        assert out.returncode == 0, (command, out.stderr)
        assert (runs["folder"] / shlex.split(command)[-1]).exists()


def test_original_config_help_shows_the_yamls_values(runs):
    out = runs["help"]
    assert out.returncode == 0, out.stderr
    assert "--parallel.tp" in out.stdout and "(default: 1e-08)" in out.stdout  # the YAML's optimizer.eps
