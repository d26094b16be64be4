"""Every official recipe trains for real at reduced size on 2 gloo processes, saves, and resumes.

Each experiment file runs exactly as a user starts it (`torchrun --standalone --nproc_per_node=2
experiments/X.py ...`), shrunk only in width, depth, sequence length and batch size; everything else is the
recipe's own: schedule, clip warmup, z-loss, instance filter, save policy, precision (amp_bf16 falls back to
fp32 on the CPU with a note), its parallel settings. Two overrides are for this 2-core machine: no
torch.compile (minutes of CPU compilation; compiled training is tested elsewhere) and 2 data workers per
rank instead of the recipe's 16-32. The first launch stops after step 2 (saving, as every run's end does);
for three of them a second resumes with --try_load_latest_save and trains step 3.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.experiments.test_recipes import RECIPES, load_recipe

ROOT = Path(__file__).resolve().parents[2]
SHRINK = [
    "--model.n_layers=2", "--model.d_model=128", "--model.n_heads=4", "--model.n_kv_heads=4",
    "--model.mlp_hidden_size=512", "--model.max_sequence_length=128", "--global_train_batch_size=8",
    "--device_train_microbatch_size=4",
]  # fmt: skip
MACHINE = ["--no-compile", "--data.num_workers=2", "--tracking.no-aim", "--console_log_interval=1"]


def _logged(folder: Path) -> dict[int, float]:
    """step -> train/CrossEntropyLoss of the run's metrics.jsonl."""
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train/CrossEntropyLoss"] for r in rows if "train/CrossEntropyLoss" in r}


def _tokens(tmp: Path, dtype: str, vocab: int) -> Path:
    path = tmp / f"tokens-{dtype}.npy"
    if not path.exists():
        rng = np.random.default_rng(0)
        rng.integers(0, vocab, size=64 * 128).astype(dtype).tofile(path)
    return path


def _launch(args: list[str]) -> str:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out.stdout


# Shrunk to the size above, these recipes build the same model as the recipe they map to (the 7B twin and 0424
# runs their siblings'; OLMo 2 13B and 32B the 7B's; OLMo 3 32B and 7B stage 1 the long-context one's, which adds
# YaRN, document masks and checkpointing) with another schedule and batch: trained once, through that recipe, to keep
# CI's time. Their settings are checked against the official configs in test_recipes.py.
SAME_WHEN_SHRUNK = {
    "olmo_7b_twin_2t": "olmo_7b",  # OLMo-7B's settings, another cluster
    "olmo_7b_0424": "olmo_7b_0724",  # the same official YAML
    "olmo2_13b": "olmo2_7b",  # the same architecture; only width, depth and the schedule differ
    "olmo2_32b": "olmo2_7b",
    "olmo3_32b": "olmo3_7b_long_context",
    "olmo3_7b": "olmo3_7b_long_context",
}


# The resume path is the same code for every recipe, so three recipes resume from their save, one for each thing
# that changes what a checkpoint holds or how it is rebuilt: OLMo 1B's tied embedding, OLMo 3's activation
# checkpointing with sliding-window layers, and the tiny OLMo 2 recipe the README starts with. Resuming on 2 and 4
# ranks from every checkpoint kind is tested in tests/distributed/.
RESUMED = {"olmo_1b", "olmo3_7b_long_context", "olmo_tiny"}  # 3 of the 7


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(RECIPES) - set(SAME_WHEN_SHRUNK)))
def test_recipe_trains_saves_and_resumes_on_two_processes(tmp_path, name):
    cfg = load_recipe(name).config()
    data = _tokens(tmp_path, cfg.data.memmap_dtype, cfg.model.vocab_size)
    # the recipe's downstream evaluators, cut to one of them and one batch (the full lists run for hours here)
    evals = ["--evaluators", "piqa", "--eval.eval_subset_num_batches=1"] if cfg.evaluators else []
    common = [f"experiments/{name}.py", *SHRINK, *MACHINE, *evals, f"--data.paths=[{data}]",
              f"--save_folder={tmp_path}/run"]  # fmt: skip
    first = _launch([*common, "--stop_at=2"])
    assert sorted(_logged(tmp_path / "run")) == [1, 2]
    if cfg.evaluators:
        assert "downstream: piqa_len_norm=" in first
    if cfg.precision == "amp_bf16":
        assert "amp_bf16 runs as fp32 here" in first
    saved = [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith("step2")]
    assert saved, sorted(p.name for p in (tmp_path / "run").iterdir())
    if name not in RESUMED:
        return
    second = _launch([*common, "--stop_at=3", "--try_load_latest_save"])
    assert "[step 3/" in second and "[step 2/" not in second  # it went on from step 2
    losses = _logged(tmp_path / "run")
    assert sorted(losses) == [1, 2, 3] and 0 < losses[3] < 20
    assert any(p.name.startswith("step3") for p in (tmp_path / "run").iterdir())
