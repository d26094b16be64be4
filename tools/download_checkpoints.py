"""List and download official OLMo checkpoints from a release CSV (`Step,Checkpoint Directory`).

download_checkpoints.py list CSV
download_checkpoints.py download CSV --step S --save-dir D
download_checkpoints.py CSV --save-dir D --step S        (the original script's spelling)
"""

from __future__ import annotations

import sys
from typing import Annotated

import tyro

from olmo_fn.checkpoint.download import download, read_csv
from olmo_fn.errors import OlmoFnError
from olmo_fn.launch import exit_on_closed_pipe, quiet_third_party, tidy_docstring

CsvArg = Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="CSV")]


def list_steps(csv: CsvArg) -> None:
    """Print the steps of a checkpoint CSV and their folders.

    Args:
        csv: Checkpoint CSV (local path or URL).
    """
    for row in read_csv(csv):
        prefix = f"ingredient {row.ingredient}  " if row.ingredient else ""
        print(f"{prefix}{row.step}\t{row.url}")


def download_step(
    csv: CsvArg,
    step: str,
    save_dir: str = "./checkpoints",
    ingredient: str | None = None,
    attempts: int = 5,
    backoff: float = 1.0,
    directory: str | None = None,
) -> None:
    """Download the files of one step's checkpoint into SAVE_DIR/stepSTEP/ (resuming and skipping).

    Args:
        csv: Checkpoint CSV (local path or URL).
        step: Training step to fetch, as written in the CSV's Step column.
        save_dir: Folder that receives step{STEP}/; nothing is written outside it.
        ingredient: Ingredient to pick in stage-2 CSVs that list one step several times.
        attempts: Tries per request before giving up on transient errors.
        backoff: Seconds before the first retry; doubled for each next one.
        directory: The Checkpoint Directory to take when the CSV lists the step more than once.
    """
    for path in download(csv, step, save_dir, ingredient, attempts, backoff, directory):
        print(path)


def main(argv: list[str]) -> None:
    """Parse argv: a `list`/`download` subcommand, or the original's `CSV --save-dir D --step S`."""
    if argv and not argv[0].startswith("-") and argv[0] not in ("list", "download"):
        argv = ["download", *argv]
    quiet_third_party()  # also: --help in whole sentences
    commands = {"list": tidy_docstring(list_steps), "download": tidy_docstring(download_step)}
    tyro.extras.subcommand_cli_from_dict(commands, args=argv)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
        sys.stdout.flush()
    except OlmoFnError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except BrokenPipeError:
        exit_on_closed_pipe()
