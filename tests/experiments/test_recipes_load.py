"""Every recipe loads from any working directory: by name through olmo_fn.recipes.load_recipe, by path, and in
`tools/inspect_data.py --experiment NAME` started outside the repository (recipes that build on another one
load it by its file, not by a module name on sys.path)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from olmo_fn.errors import ConfigError
from olmo_fn.recipes import load_recipe, recipe_names
from tests.experiments.test_recipes import RECIPES

ROOT = Path(__file__).resolve().parents[2]
TOOL = str(ROOT / "tools" / "inspect_data.py")
INSTANCES = 3


def _python(args, cwd):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_recipe_names_are_the_experiment_files():
    assert recipe_names() == sorted(RECIPES)


def _inspected() -> list[str]:
    """Every recipe that loads another by its file, and one recipe for each (sequence length, token dtype)
    left: each costs a process start here; every recipe's loading from elsewhere is the fresh-process test's."""
    builds_on = lambda name: "load_recipe(" in (ROOT / "experiments" / f"{name}.py").read_text()  # noqa: E731
    chosen: dict[str, tuple] = {}
    for name in sorted(RECIPES, key=lambda name: not builds_on(name)):  # those that build on another first
        cfg = load_recipe(name).config()
        key = (cfg.model.max_sequence_length, cfg.data.memmap_dtype)
        if builds_on(name) or key not in chosen.values():
            chosen[name] = key
    return sorted(chosen)


@pytest.mark.parametrize("name", _inspected())
def test_inspect_data_reads_a_batch_of_a_recipe_from_another_directory(tmp_path, name):
    cfg = load_recipe(name).config()
    seq_len = cfg.model.max_sequence_length
    tokens = np.random.default_rng(0).integers(0, cfg.model.vocab_size, size=INSTANCES * seq_len)
    path = tmp_path / "tokens.npy"
    tokens.astype(cfg.data.memmap_dtype).tofile(path)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    out = _python([TOOL, "--experiment", name, "--batch", "0", "--paths", str(path), "--json"], cwd)
    assert out.returncode == 0, out.stderr
    instances = json.loads(out.stdout)
    assert sorted(i["index"] for i in instances) == list(range(INSTANCES))  # one batch holds them all
    for inst in instances:  # read with the recipe's token dtype and sequence length
        k = inst["index"]
        assert inst["input_ids"] == tokens[k * seq_len : (k + 1) * seq_len].tolist()


def test_every_recipe_loads_by_name_and_by_path_in_a_fresh_process(tmp_path):
    script = (
        "import sys\n"
        "from olmo_fn.recipes import load_recipe\n"
        "for name in sys.argv[1:]:\n"
        "    by_name = load_recipe(name).config()\n"
        f"    by_path = load_recipe({str(ROOT / 'experiments')!r} + '/' + name + '.py').config()\n"
        "    assert by_name == by_path, name\n"
        "    print(name, by_name.run_name)\n"
        "print('sys.path untouched:', all('experiments' not in p for p in sys.path))\n"
    )
    out = _python(["-c", script, *sorted(RECIPES)], tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == sorted(RECIPES)
    assert lines[-1] == "sys.path untouched: True"


def test_loading_a_recipe_does_not_run_it(tmp_path, capsys):
    module = load_recipe("olmo_7b_0724")  # its own base, olmo_7b_0424, is loaded too: neither trains
    assert module.__name__ != "__main__" and module.olmo_7b_0424.__name__ != "__main__"
    assert capsys.readouterr().out == ""


def test_a_missing_recipe_is_one_line_naming_the_file_and_the_fix(tmp_path):
    with pytest.raises(ConfigError, match=r"experiments/olmo_8b\.py: no such experiment file; give a recipe"):
        load_recipe("olmo_8b")
    with pytest.raises(ConfigError, match="no such experiment file"):
        load_recipe(tmp_path / "nope.py")
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(ConfigError, match=r"empty\.py: the experiment file has no config\(\) function"):
        load_recipe(str(tmp_path / "empty.py"))
    out = _python([TOOL, "--experiment", "olmo_8b", "--batch", "0"], tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    [line] = out.stderr.splitlines()
    assert line.startswith("error: ") and line.endswith("or the path of a .py file that defines config()")


OFFICIAL = ROOT / "tests" / "fixtures" / "official_configs"
DATA_LISTS = {
    "OLMo-1B.txt": "OLMo-1B.yaml",
    "OLMo-7B.txt": "OLMo-7B.yaml",
    "OLMo-7B-0424-0724.txt": "OLMo-7B-0724.yaml",
    "OLMo-2-stage1.txt": "OLMo2-7B-stage1.yaml",
}


@pytest.mark.parametrize("name", sorted(DATA_LISTS))
def test_each_shipped_data_list_is_its_official_yamls_data_in_order(name):
    import yaml

    from olmo_fn.config import DataConfig
    from olmo_fn.data.memmap import train_paths

    official = yaml.safe_load((OFFICIAL / DATA_LISTS[name]).read_text())["data"]["paths"]
    assert train_paths(DataConfig(paths_file=str(ROOT / "experiments" / "data" / name))) == official
    assert name in " ".join(Path(p).read_text() for p in (ROOT / "experiments").glob("*.py"))
