"""`experiments/original_config.py CONFIG.yaml [flags]`: a run from an original OLMo TrainConfig YAML (an
official config or a checkpoint's config.yaml, local or URL), the way the original's scripts/train.py runs it.

Flags whose key is a field of the original TrainConfig (`--run_name=X`, `--save_overwrite`,
`--fsdp.sharding_strategy=SHARD_GRAD_OP`, `--data.paths=[a.npy,b.npy]`) are the original's dot-list
overrides, merged over the file before its `${...}` interpolations are resolved. The other flags are
olmo_fn's own (`--parallel.tp=2`, `--tracking.no-aim`, `--help`), applied to the converted config.
A config.yaml written by olmo_fn itself is read as olmo_fn's config, and every flag is olmo_fn's.
"""

from __future__ import annotations

import os
import sys

from olmo_fn.config import TrainConfig
from olmo_fn.original.loader import load_yaml
from olmo_fn.original.schema import OPTIONAL_STRUCTS, SCHEMA

OLMO_FN_ONLY = {"parallel", "tracking", "original_trainer", "eval", "loss_normalization", "verify_checkpoint"}


def is_olmo_fn_config(raw: object) -> bool:
    """A config.yaml that olmo_fn wrote (it has sections the original's TrainConfig does not)."""
    return isinstance(raw, dict) and bool(OLMO_FN_ONLY & set(raw))


def split_flags(args: list[str]) -> tuple[list[str], list[str]]:
    """(the original's dot-list overrides, olmo_fn's flags): a flag is the original's when its first key
    segment is a field of the original TrainConfig and it is `--key=value` or a bare `--flag`."""
    original, ours = [], []
    for arg in args:
        key = arg.lstrip("-").partition("=")[0].replace("-", "_")
        (original if arg.startswith("--") and in_schema(key) else ours).append(arg)
    return original, ours


def in_schema(key: str) -> bool:
    """Whether a dotted key names a field of the original TrainConfig."""
    node: object = SCHEMA
    for i, part in enumerate(key.split(".")):
        path = ".".join(key.split(".")[: i + 1])
        if path in OPTIONAL_STRUCTS:
            node = OPTIONAL_STRUCTS[path]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False
    return True


def config_from_yaml(path: str, args: list[str]) -> tuple[TrainConfig, list[str], list[str]]:
    """(TrainConfig, notes to print, olmo_fn flags left to apply) of a YAML file and the command's flags."""
    from olmo_fn.checkpoint import storage
    from olmo_fn.config_io import config_from_dict
    from olmo_fn.original import read_original_config, train_config_from_original

    text = storage.read_bytes(path)
    raw = load_yaml(text, path)
    if is_olmo_fn_config(raw):
        return config_from_dict(TrainConfig, raw), [], args
    original, ours = split_flags(args)
    tree = read_original_config(text, original, where=path)
    cfg, notes = train_config_from_original(tree)
    return cfg, notes, ours


def main(argv: list[str] | None = None) -> None:
    from olmo_fn.errors import OlmoFnError
    from olmo_fn.launch import exit_with, quiet_third_party, run_cli, whole_sentences
    from olmo_fn.train import train

    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        usage = "usage: original_config.py CONFIG.yaml [flags]   (CONFIG.yaml --help: olmo_fn's flags, YAML values)"
        print(f"{whole_sentences(__doc__)}\n\n{usage}", file=sys.stdout if args else sys.stderr)
        sys.exit(0 if args else 2)
    quiet_third_party()
    try:
        cfg, notes, rest = config_from_yaml(args[0], args[1:])
    except OlmoFnError as e:
        exit_with(e)
    if os.environ.get("RANK", "0") == "0":
        for note in notes:
            print(f"{args[0]}: {note}", file=sys.stderr)
    run_cli(cfg, f"A run of {args[0]}: the defaults below are the YAML's values.", train, argv=rest)
