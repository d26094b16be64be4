"""Entry point shared by the experiment files: parse the CLI over a recipe's config, then train."""

from __future__ import annotations

import inspect
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable

from olmo_fn.config import TrainConfig
from olmo_fn.config_io import parse_cli
from olmo_fn.errors import OlmoFnError


def _not_enum_registration(record: logging.LogRecord) -> bool:
    """False for torch's notice that torchao registers its Enum classes the deprecated way (one line per enum
    at torchao's import; harmless, and nothing a user can act on)."""
    return "is an Enum subclass and is now natively supported" not in record.getMessage()


_LIST_ITEM = re.compile(r"([-*\u2022]|\d+[.)]) ")


def whole_sentences(text: str) -> str:
    """A docstring's text with each paragraph on one line (list items keep their own lines, an indented
    paragraph such as an example command stays as written): what tyro's --help should show, which it then
    wraps to the terminal."""
    paragraphs = []
    for paragraph in re.split(r"\n\s*\n", inspect.cleandoc(text)):
        if paragraph[:1].isspace():  # indented beyond the text: an example, kept line by line
            paragraphs.append(paragraph.rstrip())
            continue
        lines = [line.strip() for line in paragraph.splitlines() if line.strip()]
        out = lines[:1]
        for line in lines[1:]:
            out.append(("\n" if _LIST_ITEM.match(line) else " ") + line)
        paragraphs.append("".join(out))
    return "\n\n".join(paragraphs)


def tidy_docstring(fn: Callable[..., object]) -> Callable[..., object]:
    """fn with each entry of its docstring's Args section on one line (tyro shows a function's argument help
    with the docstring's line breaks); returns fn."""
    lines: list[str] = []
    for line in inspect.cleandoc(fn.__doc__ or "").splitlines():
        if line.startswith("        ") and lines and lines[-1].startswith("    "):
            lines[-1] += " " + line.strip()  # a continuation of the Args entry above
        else:
            lines.append(line)
    fn.__doc__ = "\n".join(lines)
    return fn


def tidy_help() -> None:
    """Make tyro's --help show whole sentences: tyro 1.0 starts a new line wherever a docstring's next line
    begins with anything but a letter, and every multi-line docstring's next line begins with indentation."""
    from tyro import _strings

    if _strings.remove_single_line_breaks is not whole_sentences:
        _strings.remove_single_line_breaks = whole_sentences


def quiet_third_party() -> None:
    """Silence import-time noise of third-party packages: torchao's "Failed to load ..._C_*.so" for optional
    kernels this machine cannot load, torch's "<enum 'KernelPreference'> is an Enum subclass" line at torchao's
    import, torchdata's set_vital deprecation. Only those messages: every other warning still shows."""
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    warnings.filterwarnings("ignore", message=".*(KernelPreference|register_constant|set_vital).*")
    logging.getLogger("torchao").setLevel(logging.ERROR)
    pytree = logging.getLogger("torch.utils._pytree")
    if _not_enum_registration not in pytree.filters:
        pytree.addFilter(_not_enum_registration)
    tidy_help()


CLOSED_PIPE_STATUS = 141
"""Exit status when standard output was closed early (`| head`): 128 + SIGPIPE, as a shell reports it."""


def exit_on_closed_pipe() -> None:
    """Stdout was closed by its reader: say so in one line, keep Python from failing again at exit, exit 141."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    print("stopped: standard output was closed (by `| head` or a reader that quit)", file=sys.stderr)
    sys.exit(CLOSED_PIPE_STATUS)


def run_tool(fn: Callable[..., object]) -> None:
    """A command-line tool: tyro parses fn's signature; a user error prints one line and exits with status 1,
    a closed stdout (`| head`) one line and status 141."""
    import tyro

    quiet_third_party()
    try:
        tyro.cli(tidy_docstring(fn))
        sys.stdout.flush()
    except OlmoFnError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except BrokenPipeError:
        exit_on_closed_pipe()


def run_cli(
    default: TrainConfig,
    description: str | None,
    run: Callable[[TrainConfig], object],
    argv: list[str] | None = None,
) -> None:
    """Parse flags (argv, default sys.argv[1:]) over `default`, call `run(cfg)`; a user error prints one
    line and exits with status 2, a run stopped by a signal (its checkpoint written) with status 75."""
    quiet_third_party()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("olmo_fn").setLevel(logging.INFO)
    from olmo_fn.dist import shutdown_distributed

    try:
        cfg = parse_cli(TrainConfig, default, argv=argv, description=description)
        result = run(cfg)
    except OlmoFnError as e:
        exit_with(e)
    shutdown_distributed()
    if getattr(result, "stopped_by", None):
        from olmo_fn.preemption import PREEMPTED_EXIT_STATUS

        sys.exit(PREEMPTED_EXIT_STATUS)


def exit_with(error: OlmoFnError) -> None:
    """A user error: one line per problem (preflight reports them all at once), exit status 2."""
    for line in str(error).splitlines():
        print(f"error: {line}", file=sys.stderr)
    sys.exit(2)


def main(default: TrainConfig, description: str | None = None) -> None:
    """`python experiments/X.py [flags]` (or under torchrun): train the recipe `default` with the flags applied."""
    from olmo_fn.train import train

    run_cli(default, description, train)
