"""Every experiment file is a recipe with the official settings, runnable with --help and --dry_run."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from olmo_fn.model import num_params

ROOT = Path(__file__).resolve().parents[2]
RECIPES = {
    "olmo_1b": 1_176_764_416,
    "olmo_7b": 6_888_095_744,
    "olmo_7b_twin_2t": 6_888_095_744,
    "olmo_7b_0424": 6_888_095_744,
    "olmo_7b_0724": 6_888_095_744,
    "olmo2_1b": 1_484_916_736,
    "olmo2_7b": 7_298_617_344,
    "olmo2_13b": 13_716_198_400,
    "olmo_tiny": None,
}


def load_recipe(name: str):
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.pop(0)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_builds_its_config(name):
    cfg = load_recipe(name).config()
    if RECIPES[name] is not None:
        assert num_params(cfg.model) == RECIPES[name]
    assert cfg.seed == 6198


def test_official_settings_spot_checks():
    seven = load_recipe("olmo_7b").config()
    assert seven.scheduler.name == "linear_with_warmup" and seven.scheduler.grad_clip_warmup_factor == 10
    assert seven.max_duration == "2e12T" and seven.compile
    o424 = load_recipe("olmo_7b_0424").config()
    assert o424.scheduler.units == "tokens" and o424.scheduler.t_warmup == 10_485_760_000
    assert o424.optimizer.decay_embeddings and o424.model.clip_qkv == 8.0
    o2 = load_recipe("olmo2_13b").config()
    assert (
        o2.global_train_batch_size == 2048
        and o2.softmax_auxiliary_loss
        and o2.auxiliary_loss_multiplier == 1e-5
    )
    assert (
        o2.optimizer.eps == 1e-8 and o2.data.memmap_dtype == "uint32" and o2.data.instance_filter is not None
    )
    assert load_recipe("olmo2_1b").config().optimizer.learning_rate == 4e-4


def _run(args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_help_lists_every_field_with_the_recipe_default():
    out = _run(["experiments/olmo2_7b.py", "--help"])
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for flag in ("--run-name", "--max-duration", "--load-path", "--reset-trainer-state", "--model.d-model",
                 "--optimizer.learning-rate", "--scheduler.t-warmup", "--data.paths", "--try-load-latest-save"):  # fmt: skip
        assert flag in text, flag
    assert "OLMo-2-7B" in text and "(default: 4096)" in text


def test_dry_run_prints_parameters_and_writes_nothing(tmp_path):
    out = _run(["experiments/olmo_7b_0724.py", "--dry_run", f"--save_folder={tmp_path}/run"])
    assert out.returncode == 0, out.stderr
    assert "parameters: 6888095744" in out.stdout
    assert "flops per token:" in out.stdout and "memory per device" in out.stdout
    assert "preflight: passed (no data.paths given" in out.stdout
    assert not (tmp_path / "run").exists()


def test_readme_dry_run_command_as_written():
    out = _run("python experiments/olmo_7b.py --dry_run".split()[1:])
    assert out.returncode == 0, out.stderr
    assert "parameters: 6888095744" in out.stdout and "preflight: passed" in out.stdout


def test_dry_run_runs_the_preflight_checks(tmp_path):
    out = _run(["experiments/olmo_7b_0724.py", "--dry_run", f"--save_folder={tmp_path}/run",
                "--data.paths=[/nonexistent/a.npy,/nonexistent/b.npy]"])  # fmt: skip
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [
        "error: /nonexistent/a.npy: file not found; check the path (and, for a URL, its bucket and credentials)"
    ]
    assert not (tmp_path / "run").exists()
