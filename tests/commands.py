"""The commands a user is shown: every command line of the README (its indented blocks, with `\\` continuations
joined and a trailing `# comment` dropped) and of the module docstrings of tools/, experiments/ and launchers/
(which are also their --help texts)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMAND = re.compile(r"(python|\.venv/bin/python|torchrun|bash|SLURM_DIR=\S+ bash) ")


def _join(lines: list[str]) -> list[str]:
    """Command lines among `lines` (already dedented), continuations joined, comments after `  #` dropped."""
    out, i = [], 0
    while i < len(lines):
        line = lines[i].strip()
        if COMMAND.match(line):
            while line.endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line[:-1].rstrip() + " " + lines[i].strip()
            out.append(re.split(r"\s{2,}#", line)[0].strip())
        i += 1
    return out


def readme_commands(text: str | None = None) -> list[str]:
    """The README's command lines, in order (fenced ``` blocks are Python, not commands, and are skipped)."""
    text = (ROOT / "README.md").read_text() if text is None else text
    block, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("    "):
            block.append(line)
    return _join(block)


def docstring_commands() -> dict[str, list[str]]:
    """{file relative to the root: its module docstring's command lines} for every file that shows some."""
    out = {}
    for folder in ("tools", "experiments", "launchers"):
        for path in sorted((ROOT / folder).glob("*.py")):
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            commands = _join(doc.splitlines())
            if commands:
                out[str(path.relative_to(ROOT))] = commands
    return out
