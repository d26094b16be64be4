"""Every tool's, recipe's and launcher's --help is written for users: it exits 0 with nothing on stderr, uses
no word that only makes sense inside the project, names its positional arguments, and breaks lines only where
the terminal's width makes it (never mid-sentence, where a docstring's source line ended)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INTERNAL = re.compile(r"\b(issues?|waves?|sessions?|design card)\b", re.IGNORECASE)
WIDTH = 100

# One process prints every --help (importing torch once), each as `python FILE ARGS --help` would.
RUNNER = """
import contextlib, io, json, runpy, sys
out = {}
for name, args in json.loads(sys.argv[1]):
    sys.argv, buffer = [name, *args, "--help"], io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            runpy.run_path(name, run_name="__main__")
            code = None
        except SystemExit as e:
            code = e.code
    out[" ".join([name, *args])] = [code, buffer.getvalue()]
print(json.dumps(out))
"""


def _commands() -> list[tuple[str, list[str]]]:
    bench = ["data", "train", "checkpoint", "decode", "load", "eval", "chaos", "gpu"]
    files = sorted(p for p in (ROOT / "tools").glob("*.py")) + sorted((ROOT / "experiments").glob("*.py"))
    commands = [("launchers/slurm.py", []), ("launchers/k8s.py", [])]  # first: nothing has tidied tyro yet
    commands += [(str(p.relative_to(ROOT)), []) for p in files]
    commands += [("tools/download_checkpoints.py", [c]) for c in ("list", "download")]
    commands += [("tools/bench.py", [b]) for b in bench]
    return commands


def description_breaks(text: str) -> list[str]:
    """Lines of the description (above the boxes, never wrapped by tyro) broken inside a paragraph."""
    paragraphs = text.split("╭", 1)[0].split("\n\n")[1:]  # after the usage line
    return [p for p in paragraphs if "\n" in p.strip() and not p[:1].isspace() and "\n- " not in p]


def _help_column(row: str) -> int:
    """Where a row's help text starts: its indentation, or after the gap behind an argument's name."""
    gap = re.match(r"(\s*\S+(?: \S+)*\s{2,})\S", row)
    return len(gap.group(1)) if gap else len(row) - len(row.lstrip())


def mid_sentence_breaks(text: str) -> list[str]:
    """Lines of a boxed help that end early: the next line continues their text, and its first word would
    have fitted on them."""
    rows = [line[1:-1] for line in text.splitlines() if line.startswith("│") and line.endswith("│")]
    found = []
    for row, below in zip(rows, rows[1:], strict=False):
        body, next_body = row.rstrip(), below.rstrip()
        indent = len(below) - len(below.lstrip())
        if not body.strip() or not next_body.strip():
            continue
        if indent not in (len(row) - len(row.lstrip()), _help_column(row)) or indent < 2:
            continue  # a new entry, not a continuation
        if next_body.lstrip().startswith(("-", "•", "(default", "(required")):
            continue
        if len(body) + 1 + len(next_body.split()[0]) < len(row) - 1:
            found.append(f"{body.strip()!r} / {next_body.strip()!r}")
    return found


def test_every_help_is_written_for_users():
    env = {**os.environ, "COLUMNS": str(WIDTH), "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(_commands())], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0 and run.stderr == "", run.stderr[-3000:]
    helps = json.loads(run.stdout)
    assert len(helps) == len(_commands())
    problems = []
    for command, (code, text) in helps.items():
        if code not in (0, None) or "--help" not in text:
            problems.append(f"{command}: exit {code}, no help")
        problems += [f"{command}: internal word {m.group(0)!r}" for m in INTERNAL.finditer(text)]
        usage = text.split("\n\n", 1)[0]
        if re.search(r"\bSTR STR\b", usage):
            problems.append(f"{command}: unnamed positional arguments in {usage!r}")
        problems += [f"{command}: line broken mid-sentence: {b}" for b in mid_sentence_breaks(text)]
        problems += [f"{command}: description broken mid-sentence: {b!r}" for b in description_breaks(text)]
    assert problems == [], "\n".join(problems)
    recipe = " ".join(line.strip("│ ") for line in helps["experiments/olmo_tiny.py"][1].splitlines())
    for example in ("--eval.datasets mine x.npy y.npy", "--data.paths part-0.npy part-1.npy",
                    "--evaluators piqa hellaswag:len_norm valid=v-0.npy,v-1.npy"):  # fmt: skip
        assert example in " ".join(recipe.split()), example


def test_the_break_check_finds_a_break_that_the_width_did_not_make():
    def box(*rows: str) -> str:
        return "\n".join(f"│ {row:<76} │" for row in rows)

    early = box(
        "--flag      Folder to create (written under a temporary name,", "            moved into place."
    )
    assert mid_sentence_breaks(early) == [
        "'--flag      Folder to create (written under a temporary name,' / 'moved into place.'"
    ]
    full = box(
        "--flag      Folder to create (written under a temporary name, moved into the", "            place."
    )
    assert mid_sentence_breaks(full) == []
