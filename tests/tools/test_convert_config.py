"""tools/convert_config.py: original YAML <-> olmo_fn config, with nothing that changes training lost."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from olmo_fn.config import TrainConfig
from olmo_fn.config_io import config_from_dict
from olmo_fn.original import read_original_config, train_config_from_original

ROOT = Path(__file__).resolve().parents[2]
OFFICIAL = ROOT / "tests" / "fixtures" / "official_configs"


def _convert(*args, cwd=ROOT):
    (Path(cwd) / "checkpoints").mkdir(exist_ok=True)  # OLMo-1B's save_folder: ${path.choose:$SCRATCH_DIR/...}
    env = {**os.environ, "SCRATCH_DIR": str(cwd)}
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "convert_config.py"), *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


@pytest.mark.parametrize("name", ["OLMo-1B.yaml", "OLMo2-7B-stage1.yaml"])
def test_an_official_config_round_trips(name, tmp_path, monkeypatch):
    ours, back = tmp_path / "olmo_fn.yaml", tmp_path / "original.yaml"
    out = _convert(OFFICIAL / name, ours, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "no effect here:" in out.stdout and f"wrote {ours}" in out.stdout
    converted = config_from_dict(TrainConfig, yaml.safe_load(ours.read_text()))
    monkeypatch.setenv("SCRATCH_DIR", str(tmp_path))
    assert converted == train_config_from_original(read_original_config((OFFICIAL / name).read_text()))[0]
    assert _convert(ours, back, cwd=tmp_path).returncode == 0
    again = train_config_from_original(read_original_config(back.read_text()))[0]
    assert again == converted
    refused = _convert(OFFICIAL / name, ours, cwd=tmp_path)  # no overwrite without --overwrite
    assert (
        refused.returncode == 1
        and refused.stderr.strip() == f"error: {ours} exists; pass --overwrite to replace it"
    )


def test_a_recipe_becomes_an_original_config_the_original_loader_reads(tmp_path):
    out = _convert("experiments/olmo2_7b.py", tmp_path / "OLMo-2-7B.yaml")
    assert out.returncode == 0, out.stderr
    tree = read_original_config((tmp_path / "OLMo-2-7B.yaml").read_text())
    assert tree["model"]["d_model"] == 4096 and tree["optimizer"]["eps"] == 1e-8
    assert tree["fsdp"]["sharding_strategy"] == "FULL_SHARD" and tree["scheduler"]["units"] == "tokens"


def test_the_docstring_examples_as_written(tmp_path):
    import shlex

    for name in ("tools", "experiments"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "OLMo-1B.yaml").write_bytes((OFFICIAL / "OLMo-1B.yaml").read_bytes())
    (tmp_path / "checkpoints").mkdir()
    doc = (ROOT / "tools" / "convert_config.py").read_text().split('"""')[1]
    commands = [line.split("#")[0].strip() for line in doc.splitlines() if line.strip().startswith("python ")]
    assert len(commands) == 2
    for command in commands:
        args = shlex.split(command)
        out = subprocess.run(
            [sys.executable, *args[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=120,
            env={**os.environ, "SCRATCH_DIR": str(tmp_path)},
        )  # fmt: skip
        assert out.returncode == 0, (command, out.stderr)
        assert (tmp_path / args[-1]).exists()


def test_original_config_help_shows_the_yamls_values(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    out = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "original_config.py"), str(OFFICIAL / "OLMo2-7B-stage1.yaml"),
         "--help"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "--parallel.tp" in out.stdout and "(default: 1e-08)" in out.stdout  # the YAML's optimizer.eps
