"""The run the launcher tests compare with: the tiny recipe, shrunk, for STEPS steps under
`torchrun --standalone --nproc_per_node=4`, on two token files whose names hold a space and a comma."""

import subprocess
import sys

import numpy as np
import pytest
from safetensors.torch import load_file

from tests.launchers.slurm_cluster import ROOT

STEPS = 120
FLAGS = ["--model.n_layers=1", "--model.d_model=64", "--model.n_heads=2", "--model.mlp_hidden_size=128",
         "--model.max_sequence_length=64", "--global_train_batch_size=8", "--device_train_microbatch_size=2",
         "--tracking.no-aim", "--tracking.progress-bar=False", "--no-eval_on_load", "--console_log_interval=1",
         f"--max_duration={STEPS}", f"--save_interval_unsharded={STEPS}"]  # fmt: skip


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> dict:
    """{"folder": the data folder, "flags": the experiment's flags, "reference": its final parameters}."""
    folder = tmp_path_factory.mktemp("launcher-data")
    for i, name in enumerate(("a b.npy", "c,d.npy")):
        np.random.default_rng(i).integers(0, 4096, size=300 * 64).astype(np.uint16).tofile(folder / name)
    flags = [*FLAGS, "--data.paths", str(folder / "a b.npy"), str(folder / "c,d.npy")]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4",
           "experiments/olmo_tiny.py", *flags, f"--save_folder={folder / 'reference'}"]  # fmt: skip
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    final = load_file(folder / "reference" / f"step{STEPS}-unsharded" / "model.safetensors")
    return {"folder": folder, "flags": flags, "reference": final}


def assert_equal_to_reference(run_folder, reference: dict) -> None:
    """The run's final parameters equal the reference's, bit for bit."""
    final = load_file(run_folder / f"step{STEPS}-unsharded" / "model.safetensors")
    assert final.keys() == reference.keys()
    for key in final:
        assert final[key].equal(reference[key]), key
