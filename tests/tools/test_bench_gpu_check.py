"""The GPU check is ready to run: it refuses clearly where there is no GPU, its device script does too, and
`--device cpu --tiny` runs every row's code end to end at toy size."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from olmo_fn.benchmarks.gpu_check import REFERENCE, GpuCheck, Runner, run_gpu_check
from olmo_fn.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
NO_CUDA = "error: --device cuda: no CUDA device is visible here; run the GPU check on a GPU machine"
no_cuda_only = pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA"
)


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=180, **kw)


@no_cuda_only
def test_gpu_train_check_refuses_without_cuda():
    out = _run([sys.executable, "tools/bench.py", "train", "--device", "cuda"])
    assert out.returncode != 0
    assert out.stderr.strip().splitlines()[-1] == NO_CUDA


@no_cuda_only
def test_gpu_check_refuses_without_cuda():
    """The README's `python tools/bench.py gpu`, as written."""
    out = _run([sys.executable, "tools/bench.py", "gpu"])
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == NO_CUDA


@no_cuda_only
def test_device_script_refuses_without_cuda_and_keeps_the_log(tmp_path):
    """`bash tools/gpu_check.sh`, the device tool's command, with this venv's Python."""
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)}
    out = _run(["bash", "tools/gpu_check.sh"], env=env)
    assert out.returncode == 1
    assert out.stdout.strip().splitlines()[-1] == NO_CUDA  # the check's output goes through tee
    assert (tmp_path / "gpu_check.log").read_text().strip().splitlines()[-1] == NO_CUDA
    assert {p.name for p in tmp_path.iterdir()} == {"gpu_check.log", "gpu_check.json", "nvidia-smi.txt"}


def test_full_size_on_the_cpu_is_refused():
    with pytest.raises(ConfigError, match="--tiny"):
        run_gpu_check(GpuCheck(device="cpu"))


def test_a_row_that_fails_runs_out_of_memory_or_time_is_reported_and_the_check_goes_on(capsys):
    runner = Runner(torch.device("cpu"))

    def oom() -> dict:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def broken() -> dict:
        raise RuntimeError("a kernel that does not exist\nsecond line")

    runner.run("train", "oom", oom, deadline=60)
    runner.run("train", "broken", broken, deadline=60)
    runner.run("train", "late", lambda: {"x": 1.0}, deadline=-1)
    runner.run("train", "fine", lambda: {"x": 1.0}, deadline=60)
    assert [r.status for r in runner.rows] == [
        "OOM",
        "failed: RuntimeError: a kernel that does not exist",
        "skipped: time budget: -1 s spent",
        "ok",
    ]
    assert runner.rows[-1].figures == {"x": 1.0}
    assert "Traceback" in capsys.readouterr().err  # the failure's traceback is printed, not lost


def test_tiny_check_runs_every_row_on_the_cpu():
    """`python tools/bench.py gpu --device cpu --tiny`, as the bench's --help gives it (about 20 s here)."""
    out = _run([sys.executable, "tools/bench.py", "gpu", "--device", "cpu", "--tiny"])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    figures = json.loads(lines[-1])
    assert figures["bench"] == "gpu-check" and figures["failed"] == []
    rows = {(r["section"], r["name"]): r for r in figures["rows"]}
    assert [s for s, _ in rows] == ["setup"] * 2 + ["logits"] * 2 + ["train"] * 8 + ["decode"] * 4
    for (_, name), row in rows.items():
        if "float8 on" in name:
            assert row["status"] == "skipped: needs CUDA", row
        else:
            assert row["status"] == "ok", row
    for preset, reference in (("olmo-1b", "OlmoForCausalLM"), ("olmo2-1b", "Olmo2ForCausalLM")):
        logits = rows[("logits", preset)]["figures"]
        assert logits["reference"] == reference
        exact = logits["fp32 olmo_fn vs transformers"]
        assert exact["max_abs"] < 1e-4 and exact["top1_agreement"] == 1.0, logits
        assert logits["bf16 olmo_fn vs transformers"]["max_abs"] < 0.5, logits
    for (section, _), row in rows.items():
        if section in ("train", "decode") and row["status"] == "ok":
            assert row["figures"]["tokens_per_second"] > 0, row
    assert 4 < rows[("train", "olmo2-1b, float8 off, AC off")]["figures"]["first_loss"] < 7  # ~ln(256)
    assert f"  reference: {REFERENCE}" in lines
    assert any(
        line.startswith("  target: >= 45% MFU for the 1B shape; olmo-1b, float8 off, AC off: ")
        for line in lines
    )
    assert any(line.startswith("total wall time ") for line in lines)


def test_the_rows_initial_weights_are_olmo_fns_init():
    from olmo_fn.benchmarks.gpu_check import shape
    from olmo_fn.benchmarks.gpu_train import initial_state
    from olmo_fn.model import Transformer, init_weights

    cfg = shape("olmo2-1b", tiny=True)
    model = Transformer(cfg)
    init_weights(model, cfg, seed=0)
    state = initial_state(cfg)
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
