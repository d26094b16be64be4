"""`python tools/bench.py train` and `decode` run every variant in its own fresh process, alternating, and
print what a reader needs to trust the figures: the CPU, its threads and its load, ratios that match the
rates, MFU never above 100%; a failing worker or bad input is one line and a non-zero exit (those four runs,
which time nothing, start together)."""

import json
import math
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from olmo_fn.benchmarks.decode import VARIANTS as DECODE_VARIANTS
from olmo_fn.benchmarks.decode import DecodeBench
from olmo_fn.benchmarks.train import VARIANTS as TRAIN_VARIANTS
from olmo_fn.benchmarks.train import TrainBench, resolve_case

ROOT = Path(__file__).resolve().parents[2]
SHAPE = ["--d_model", "32", "--n_layers", "1", "--n_heads", "2", "--mlp_hidden", "64", "--vocab_size", "128"]


def _bench(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "tools/bench.py", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def _figures(out: subprocess.CompletedProcess) -> dict:
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _assert_header(stdout: str, threads: int) -> None:
    assert re.search(rf"^CPU: .+, \d+ cores; torch threads: {threads} per worker", stdout, re.M)
    usage = r"process CPU \d+% of \d+ threads, machine busy (\d+%|unknown)"
    assert re.search(rf"^CPU use over all timed steps: {usage}", stdout, re.M)


def _assert_ratios(figures: dict, baseline: str) -> None:
    tps = figures["tokens_per_second"]
    key = f"ratio_vs_{baseline.replace('-', '_')}"
    for v, rate in tps.items():
        assert rate > 0 and figures["spread"][v] >= 0
        assert math.isclose(figures[key][v], rate / tps[baseline])
        for peer, ratio in figures["ratios"][v].items():
            assert math.isclose(ratio, rate / tps[peer])


def test_train_bench_alternates_fresh_workers_with_honest_figures():
    """Two rounds of two eager variants at a tiny shape (about 15 s here)."""
    variants = ["olmo_fn-eager", "hf-eager"]
    out = _bench("train", *SHAPE, "--seq_len", "32", "--batch_size", "2", "--steps", "2", "--repeats", "2",
                 "--variants", *variants)  # fmt: skip
    figures = _figures(out)
    assert figures["bench"] == "train" and list(figures["tokens_per_second"]) == variants
    assert figures["order"] == variants * 2  # A B, A B
    pids = [p for v in variants for p in figures["pids"][v]]
    assert len(set(pids)) == 4  # a fresh process for every variant in every round
    _assert_ratios(figures, "hf-eager")
    for v in variants:
        assert figures["mfu"][v] is None or 0 < figures["mfu"][v] <= 1
        assert figures["usage"][v]["threads"] == figures["usage_all"]["threads"] >= 1
    assert math.isclose(
        figures["first_loss"]["olmo_fn-eager"], figures["first_loss"]["hf-eager"], rel_tol=1e-5
    )
    _assert_header(out.stdout, figures["usage_all"]["threads"])
    assert re.search(r"^peak [\d.]+ GFLOP/s: best of 18 fp32 matmul probes \(1024/2048 square, \d+ threads\) "
                     r"before, between and after the rounds", out.stdout, re.M)  # fmt: skip
    for v in variants:
        assert re.search(
            rf"^{v} .* tokens/s \(rounds' spread .*\)  MFU .* \[process CPU \d+%", out.stdout, re.M
        )


def test_decode_bench_measures_the_roofline_in_its_own_process():
    """One round: two eager variants, int8 and the two rooflines, each in a fresh process (about 15 s here)."""
    variants = ["olmo_fn-eager", "hf-default", "olmo_fn-int8"]
    out = _bench("decode", *SHAPE, "--prompt_len", "4", "--new_tokens", "8", "--steps", "1", "--repeats", "1",
                 "--variants", *variants)  # fmt: skip
    figures = _figures(out)
    assert figures["bench"] == "decode" and list(figures["tokens_per_second"]) == variants
    assert figures["order"] == [*variants, "roofline", "roofline-int8"]  # int8 adds its kernel's pass
    assert figures["same_tokens"]["olmo_fn-eager"] and figures["same_tokens"]["hf-default"]
    assert figures["int8_kernel_pass_tokens_per_second"] > 0 and "torch._weight_int8pack_mm" in out.stdout
    _assert_ratios(figures, "hf-default")
    roof = figures["roofline_tokens_per_second"]
    for v, rate in figures["tokens_per_second"].items():
        assert math.isclose(figures["fraction_of_roofline"][v], rate / roof)
    _assert_header(out.stdout, figures["usage_all"]["threads"])
    assert (
        "roofline: one batch-1 matrix-vector pass over every weight, measured in its own process"
        in out.stdout
    )


BAD = [
    (["train", "--case", "huge"], "error: unknown --case 'huge'; choose from default, tiny"),
    (["decode", "--variants", "hf-eager"], "error: unknown variant 'hf-eager' in --variants; choose from "
                                           + ", ".join(DECODE_VARIANTS)),
    (["train", "--repeats", "0"], "error: --steps and --repeats must be at least 1, not 4 and 0"),
]  # fmt: skip


@pytest.fixture(scope="module")
def refusals(tmp_path_factory):
    """The runs of BAD by their arguments, and ("broken",): a train bench whose workers cannot import
    transformers (a package of that name first on PYTHONPATH), all started together."""
    broken = tmp_path_factory.mktemp("broken")
    (broken / "transformers").mkdir()
    (broken / "transformers" / "__init__.py").write_text('raise ImportError("transformers is broken here")\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(broken), os.environ.get("PYTHONPATH", "")])}
    runs = {tuple(args): (args, None) for args, _ in BAD}
    runs["broken",] = (["train", *SHAPE, "--seq_len", "8", "--batch_size", "1", "--steps", "1", "--repeats", "2",
                        "--variants", "hf-eager", "olmo_fn-eager"], env)  # fmt: skip
    with ThreadPoolExecutor(len(runs)) as pool:
        done = {key: pool.submit(_bench, *args, env=e) for key, (args, e) in runs.items()}
        return {key: future.result() for key, future in done.items()}


def test_a_failing_worker_is_one_line_naming_the_variant(refusals):
    """A worker that cannot import transformers: the bench stops at once with that worker's last error line."""
    out = refusals["broken",]
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "error: the hf-eager worker (round 1 of 2) failed with exit code 1: "
        "ImportError: transformers is broken here"
    ]
    assert "bench-worker-result" not in out.stdout and '"bench"' not in out.stdout


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_input_is_one_line(refusals, args, message):
    out = refusals[tuple(args)]
    assert out.returncode == 1 and out.stderr.strip().splitlines() == [message]


def test_the_tiny_case_is_the_tiny_recipe_and_flags_override_it():
    tiny = resolve_case(TrainBench(case="tiny"), TRAIN_VARIANTS)
    shape = (tiny.d_model, tiny.n_layers, tiny.n_heads, tiny.mlp_hidden, tiny.vocab_size)
    assert shape == (256, 4, 4, 768, 4096) and (tiny.seq_len, tiny.batch_size) == (256, 16)
    assert resolve_case(TrainBench(case="tiny", d_model=32), TRAIN_VARIANTS).d_model == 32
    default = resolve_case(TrainBench(), TRAIN_VARIANTS)
    assert (default.d_model, default.n_layers, default.seq_len, default.batch_size) == (512, 8, 512, 8)
    decode = resolve_case(DecodeBench(case="tiny"), DECODE_VARIANTS)
    assert (decode.d_model, decode.n_layers, decode.vocab_size, decode.batch_size) == (256, 4, 4096, 1)
