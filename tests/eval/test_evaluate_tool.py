"""tools/evaluate.py: the same scores from every checkpoint kind (also over HTTP), its output forms, its
docstring's commands as written, and one-line errors.

Each run is a fresh process; the runs a fixture or test needs start together (most of a run here is starting
Python and torch, about 4 s), so the file takes the time of a few runs, not of 20."""

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.checkpoint.servers import http_server
from tests.eval.helpers import random_model, tiny_config, write_checkpoints

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "evaluate.py"


def run(*args: str, launcher: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    cmd = [*launcher, str(TOOL), *args] if launcher else [sys.executable, str(TOOL), *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def run_together(runs: dict) -> dict[object, subprocess.CompletedProcess]:
    """key -> run(*args, **kwargs) for each key -> (args, kwargs) of `runs`, the processes started together."""
    with ThreadPoolExecutor(len(runs)) as pool:
        done = {key: pool.submit(run, *args, **kwargs) for key, (args, kwargs) in runs.items()}
        return {key: future.result() for key, future in done.items()}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    cfg = tiny_config()
    return write_checkpoints(tmp_path_factory.mktemp("ckpt"), random_model(cfg, seed=4), cfg)


SCORE_ARGS = ("--tasks", "piqa,winogrande,trivia_qa_wiki_ppl", "--limit", "12", "--json")


@pytest.fixture(scope="module")
def outputs(checkpoints):
    """The scores of every checkpoint kind, of the native one read over HTTP, and a table."""
    native = Path(checkpoints["native"])
    table = ("--tasks", "copa,arc_easy:pmi_dc", "--limit", "10", "--batch-size", "4")
    with http_server(native.parent) as server:
        return run_together(
            {
                **{kind: ((path, *SCORE_ARGS), {}) for kind, path in checkpoints.items()},
                "http": ((f"{server.url}/{native.name}", *SCORE_ARGS), {}),
                "table": ((str(native), *table), {}),
            }
        )


def test_every_checkpoint_kind_gives_the_same_scores(checkpoints, outputs):
    results = {}
    for kind in checkpoints:
        out = outputs[kind]
        assert out.returncode == 0, out.stderr[-2000:]
        results[kind] = json.loads(out.stdout)  # exactly one JSON object on stdout
    assert results["native"] == results["sharded"] == results["olmo"] == results["hf"]
    assert set(results["native"]) == {"piqa", "winogrande", "trivia_qa_wiki_ppl"}
    assert set(results["native"]["trivia_qa_wiki_ppl"]) == {"ce_loss"}


def test_a_checkpoint_over_http(outputs):
    remote = outputs["http"]
    assert remote.returncode == 0, remote.stderr[-2000:]
    assert json.loads(remote.stdout) == json.loads(outputs["native"].stdout)


def test_table_with_document_and_request_counts(outputs):
    out = outputs["table"]
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines()[1:]}
    assert rows["copa"][1:2] == ["acc"] and rows["copa"][3:] == ["10", "20"]
    assert rows["arc_easy"][1] == "pmi_dc" and rows["arc_easy"][3] == "10"
    assert "requests/s" in out.stderr and "evaluating" in out.stderr  # timing and progress bar on stderr


def _docstring_commands() -> list[str]:
    text = TOOL.read_text().split('"""')[1]
    return [line.strip() for line in text.splitlines() if line.strip().startswith(("python ", "torchrun "))]


def test_docstring_commands_as_written(checkpoints):
    commands = _docstring_commands()
    assert len(commands) == 4
    runs = {}
    for command in commands:
        words = command.replace("CHECKPOINT", checkpoints["native"]).split()
        if (
            words[0] == "torchrun"
        ):  # torchrun as installed in the venv, with its flags as written (+ --standalone)
            assert words[1:3] == ["--nproc_per_node=4", "tools/evaluate.py"]
            launcher = (sys.executable, "-m", "torch.distributed.run", "--standalone", words[1])
            runs[command] = (words[3:], {"launcher": launcher})
        else:
            assert words[1] == "tools/evaluate.py"
            runs[command] = (words[2:], {})
    for command, out in run_together(runs).items():
        assert out.returncode == 0, (command, out.stderr[-2000:])
        if "--list-tasks" in command:
            assert {"piqa", "mmlu_stem_mc_5shot", "arc_easy_rc_5shot"} <= set(out.stdout.split())
        elif "--json" in command:
            assert set(json.loads(out.stdout)) == {"mmlu_stem_mc_5shot", "arc_challenge"}
        else:
            assert re.search(r"^piqa\s+len_norm\s+0\.\d{4}\s+\d+\s+\d+$", out.stdout, re.M), out.stdout


BAD = [
    (["--tasks", "piqa,nope"], "unknown downstream task 'nope'; known tasks: piqa, hellaswag"),
    (["--tasks", "copa:accuracy"], "unknown metric 'accuracy'; known: acc, len_norm"),
    (["--tasks", "piqa", "--tokenizer", "tokenizers/allenai_dolma2.json"], "has 100278 tokens, more than the model's vocab_size 50280"),
    (["--tasks", "piqa", "--tokenizer", "missing.json"], "missing.json is neither a file nor packaged"),
    (["--tasks", ""], "--tasks: name at least one task"),
]  # fmt: skip


@pytest.fixture(scope="module")
def refusals(checkpoints, tmp_path_factory):
    """The runs of BAD on the native checkpoint, and one on an empty folder (key "empty")."""
    runs = {tuple(args): ((checkpoints["native"], *args), {}) for args, _ in BAD}
    return run_together({**runs, "empty": ((str(tmp_path_factory.mktemp("empty")), "--tasks", "piqa"), {})})


@pytest.mark.parametrize("args, message", BAD)
def test_bad_input_is_one_line(refusals, args, message):
    out = refusals[tuple(args)]
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr[-1000:]


def test_a_folder_that_is_no_checkpoint(refusals):
    out = refusals["empty"]
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "not a checkpoint olmo_fn recognises" in out.stderr and len(out.stderr.strip().splitlines()) == 1
