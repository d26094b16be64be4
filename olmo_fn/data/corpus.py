"""The embedded default corpus: English prose that ships with Python itself, tokenised, cached, no download.

Source: the docstrings of the Python standard library's modules (read from their source files with `ast`,
nothing is imported) plus the language reference help topics in `pydoc_data.topics`, both part of the
CPython distribution under the Python Software Foundation License. About 2 MB of text; the same Python
version gives the same corpus. No third-party text is stored in this repository: it is read at run time.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import platform
import shutil
import sysconfig
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

from olmo_fn.data.prepare import DEFAULT_SPECIAL_TOKENS, save_text, tokenize_documents, train_bpe_tokenizer

CORPUS_VERSION = 1
VOCAB_SIZE = 4096
EOS_TOKEN_ID = 0  # "<|endoftext|>"
PAD_TOKEN_ID = 1  # "<|padding|>"
SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
SOURCE = "CPython standard library docstrings and pydoc_data.topics"
LICENSE = "Python Software Foundation License Version 2"


@dataclass(frozen=True)
class CorpusPaths:
    """Where the default corpus lies and the ids a model trained on it needs."""

    train_paths: list[str]
    valid_paths: list[str]
    tokenizer_json: str
    manifest: str
    vocab_size: int = VOCAB_SIZE
    eos_token_id: int = EOS_TOKEN_ID
    pad_token_id: int = PAD_TOKEN_ID
    memmap_dtype: str = "uint16"


def default_cache_dir() -> Path:
    """$OLMO_FN_CACHE, else .cache/olmo_fn in the repository root (else in the home directory)."""
    if os.environ.get("OLMO_FN_CACHE"):
        return Path(os.environ["OLMO_FN_CACHE"])
    repo = Path(__file__).resolve().parents[2]
    base = repo if (repo / "pyproject.toml").exists() else Path.home()
    return base / ".cache" / "olmo_fn"


def _module_text(path: Path) -> str:
    """The docstrings of a module, its classes and functions, in source order, as one document."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):
            return ""
    nodes = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    nodes.sort(key=lambda n: getattr(n, "lineno", 0))
    docs = [ast.get_docstring(n) for n in nodes]
    return "\n\n".join(d for d in docs if d)


def corpus_documents(min_chars: int = 200) -> list[tuple[str, str]]:
    """(name, text) documents of the corpus in a fixed order: one per stdlib module, one per help topic."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            if name.endswith(".py"):
                path = Path(dirpath) / name
                text = _module_text(path)
                if len(text) >= min_chars:
                    docs.append((path.relative_to(root).as_posix(), text))
    from pydoc_data.topics import topics

    docs += [
        (f"pydoc_data/topics/{key}", topics[key]) for key in sorted(topics) if len(topics[key]) >= min_chars
    ]
    return docs


def is_validation(name: str, valid_fraction: float) -> bool:
    """Whether a document belongs to the validation split (decided by a hash of its name)."""
    h = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    return h < valid_fraction * 2**64


def _paths(folder: Path, manifest: dict) -> CorpusPaths:
    return CorpusPaths(
        train_paths=[str(folder / f["path"]) for f in manifest["train"]["files"]],
        valid_paths=[str(folder / f["path"]) for f in manifest["valid"]["files"]],
        tokenizer_json=str(folder / "tokenizer.json"),
        manifest=str(folder / "manifest.json"),
        vocab_size=manifest["vocab_size"],
    )


def _build(folder: Path, vocab_size: int, valid_fraction: float, progress: bool) -> None:
    """Write tokenizer.json, train/valid token files and manifest.json of the corpus into folder."""
    docs = corpus_documents()
    train = [text for name, text in docs if not is_validation(name, valid_fraction)]
    valid = [text for name, text in docs if is_validation(name, valid_fraction)]
    tokenizer = train_bpe_tokenizer(
        train, vocab_size, special_tokens=DEFAULT_SPECIAL_TOKENS, progress=progress
    )
    tokenizer.save(str(folder / "tokenizer.json"))
    splits = {}
    for name, texts in (("train", train), ("valid", valid)):
        splits[name] = tokenize_documents(
            texts,
            tokenizer,
            str(folder),
            eos_token_id=EOS_TOKEN_ID,
            prefix=name,
            max_tokens_per_file=1 << 40,
            progress=progress,
        )
        for f in splits[name]["files"]:
            f["path"] = os.path.basename(f["path"])  # relative to the corpus folder
    manifest = {
        "source": SOURCE,
        "license": LICENSE,
        "python": platform.python_version(),
        "documents": len(docs),
        "text_sha256": hashlib.sha256("\0".join(f"{n}\0{t}" for n, t in docs).encode()).hexdigest(),
        "vocab_size": tokenizer.get_vocab_size(with_added_tokens=True),
        "eos_token_id": EOS_TOKEN_ID,
        "pad_token_id": PAD_TOKEN_ID,
        "valid_documents": sorted(name for name, _ in docs if is_validation(name, valid_fraction)),
        **splits,
    }
    save_text(str(folder / "manifest.json"), json.dumps(manifest, indent=2) + "\n")


def default_corpus(
    cache_dir: str | os.PathLike | None = None,
    *,
    vocab_size: int = VOCAB_SIZE,
    valid_fraction: float = 0.05,
    progress: bool = False,
) -> CorpusPaths:
    """Build (once, then cached) the default corpus: a BPE tokenizer and uint16 train/validation token files."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = f"stdlib-py{platform.python_version()}-v{CORPUS_VERSION}-vocab{vocab_size}-valid{valid_fraction}"
    folder = cache / "default_corpus" / key
    if not (folder / "manifest.json").exists():
        tmp = folder.with_name(f"{key}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.mkdir(parents=True)
        try:
            _build(tmp, vocab_size, valid_fraction, progress)
            try:
                tmp.rename(folder)
            except OSError:  # another process finished first: use its copy
                if not (folder / "manifest.json").exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return _paths(folder, json.loads((folder / "manifest.json").read_text()))
