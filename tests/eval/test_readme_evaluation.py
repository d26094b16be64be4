"""The README's Evaluation section: its commands are the ones the tests run."""

import subprocess
import sys
from pathlib import Path

import yaml

from tests.eval.test_evaluate_tool import _docstring_commands

ROOT = Path(__file__).resolve().parents[2]


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Evaluation\n", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if line.startswith("    ") and line.strip()]


def test_the_tool_commands_are_the_tested_docstring_ones():
    tool = [c for c in _commands() if "tools/evaluate.py" in c]
    assert len(tool) == 3 and set(tool) <= set(
        _docstring_commands()
    )  # run by test_docstring_commands_as_written


def test_the_install_command_is_what_setup_runs():
    (pip,) = [c for c in _commands() if "pip install" in c]
    assert pip in (ROOT / "tools" / "setup.sh").read_text()


def test_the_evaluators_command_line_as_written():
    (command,) = [c for c in _commands() if c.startswith("python experiments/")]
    out = subprocess.run(
        [sys.executable, *command.split()[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    config = yaml.safe_load(out.stdout.split("\n---\n")[0])
    assert [(e["label"], e["type"], e["metric"], e["paths"]) for e in config["evaluators"]] == [
        ("piqa", "downstream", None, None), ("hellaswag", "downstream", None, None),
        ("arc_easy", "downstream", "pmi_dc", None), ("c4", "lm", None, ["c4-validation.npy"]),
    ]  # fmt: skip
