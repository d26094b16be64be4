"""Load an experiment file (a recipe: a Python file with `config() -> TrainConfig`) by name or path.

`load_recipe("olmo_7b")` is experiments/olmo_7b.py of this repository, found from the olmo_fn package, so it
works from any working directory; any other argument is a file path. The file runs as a fresh module under
its own name (never `__main__`, so loading a recipe does not start its training) without touching sys.path:
a recipe that builds on another loads it with `load_recipe` too.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from olmo_fn.errors import ConfigError

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
"""The recipes folder of this repository (the one next to the olmo_fn package)."""


def recipe_names() -> list[str]:
    """The names of the recipes (files defining config()) in this repository's experiments/ folder."""
    return sorted(
        p.stem for p in EXPERIMENTS.glob("*.py") if "\ndef config(" in p.read_text(encoding="utf-8")
    )


def recipe_path(name_or_path: str | Path) -> Path:
    """The file of a recipe: a bare name (no folder, no .py) is experiments/NAME.py of this repository; anything
    else is a path (relative ones to the working directory)."""
    path = Path(name_or_path).expanduser()
    if isinstance(name_or_path, str) and len(path.parts) == 1 and path.suffix != ".py":
        return EXPERIMENTS / f"{name_or_path}.py"
    return path.resolve()


def load_recipe(name_or_path: str | Path) -> ModuleType:
    """The module of a recipe (see recipe_path); ConfigError naming the file and the fix when it is missing or
    has no config()."""
    path = recipe_path(name_or_path)
    if not path.is_file():
        raise ConfigError(
            f"{path}: no such experiment file; give a recipe name ({', '.join(recipe_names())}) "
            "or the path of a .py file that defines config()"
        )
    spec = importlib.util.spec_from_file_location(f"olmo_fn_recipe_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: not a Python file; give the path of a .py experiment file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "config", None)):
        raise ConfigError(
            f"{path}: the experiment file has no config() function; define config() -> TrainConfig"
        )
    return module
