"""Reading the original OLMo's YAML configs the way its OmegaConf-based loader does, without OmegaConf.

- Scalars as OmegaConf reads them: `1e-6` is a float (YAML 1.1, and so PyYAML, wants a dot in it).
- The original's defaults fill absent keys; a key the original's schema does not have is an error.
- Dot-list overrides (`--a.b=value`, a bare `--flag` meaning true, hyphens read as underscores) are merged
  over the file, before interpolation, so that `${save_interval}` sees an overridden value.
- `${key.path}` interpolations and the resolvers the official files use: `oc.env:VAR[,default]`,
  `path.choose:a,b,...` (the first path that exists, or the first URL), `path.glob:pattern,...` (sorted
  matches, in the order of the patterns) and `path.last_checkpoint:folder`.
"""

from __future__ import annotations

import copy
import glob
import os
import re
from typing import Any

import yaml

from olmo_fn.errors import ConfigError
from olmo_fn.original.schema import LIST_STRUCTS, OPTIONAL_STRUCTS, SCHEMA


def _error(message: str) -> ConfigError:
    """A ConfigError of one line, whatever text of the config it quotes (a key may hold a line break)."""
    return ConfigError("".join(c if c.isprintable() else repr(c)[1:-1] for c in message))


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader read as OmegaConf's loader reads: its (YAML 1.2) float rule, dates left as text,
    and a string key given twice in one mapping refused (PyYAML alone silently keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key, _ in node.value:
            if key.tag == yaml.resolver.BaseResolver.DEFAULT_SCALAR_TAG:
                if key.value in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found {key.value!r} twice",
                        key.start_mark,
                    )
                seen.add(key.value)
        return super().construct_mapping(node, deep=deep)


_FLOAT_TAG, _DATE_TAG = "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_FLOAT_TAG, _DATE_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
        |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


MAX_VALUES = 1_000_000  # an official config holds a few thousand; aliases can make a short file hold 9**9


def load_yaml(text: str | bytes, where: str = "config") -> Any:
    """YAML text to Python values with OmegaConf's scalar rules; ConfigError when it does not parse, nests
    too deeply, or (through aliases, a "billion laughs" file) expands to more than MAX_VALUES values."""
    try:
        value = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise _error(f"{where}: not valid YAML: nested too deeply") from None
    except (yaml.YAMLError, ValueError) as e:  # ValueError: PyYAML's conversions (a date that is no date)
        raise _error(f"{where}: not valid YAML: {_problem(e)}") from None
    _check_expansion(value, where)
    return value


def _problem(e: Exception) -> str:
    """What a YAML error says, in one line: its context and problem, and where."""
    if isinstance(e, yaml.MarkedYAMLError) and e.problem:
        mark = e.problem_mark or e.context_mark
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return " ".join(p for p in (e.context, e.problem) if p) + at
    return (str(e).splitlines() or [type(e).__name__])[0]


def _check_expansion(value: Any, where: str) -> None:
    """Count the values of a loaded tree as a reader walking it sees them (an alias as often as it is used)."""
    stack, seen = [value], 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise _error(f"{where}: expands to more than {MAX_VALUES} values (YAML aliases?); refused")
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def merge_with_defaults(raw: dict[str, Any], where: str = "") -> dict[str, Any]:
    """The original's schema defaults with `raw` merged in; an unknown key is an error naming it."""
    return _merge(copy.deepcopy(SCHEMA), raw, where)


def _merge(base: dict[str, Any], raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _error(f"{where.rstrip('.') or 'config'}: expected a mapping, got {raw!r}")
    for key, value in raw.items():
        path = f"{where}{key}"
        if key not in base:
            raise _error(
                f"{path}: not a field of the original OLMo TrainConfig; remove it or check its spelling"
            )
        base[key] = _merge_value(base[key], value, path)
    return base


def _merge_value(default: Any, value: Any, path: str) -> Any:
    if path in OPTIONAL_STRUCTS:
        return None if value is None else _merge(copy.deepcopy(OPTIONAL_STRUCTS[path]), value, path + ".")
    if path in LIST_STRUCTS:
        if value is None:
            return []
        if not isinstance(value, list):
            raise _error(f"{path}: expected a list, got {value!r}")
        item = LIST_STRUCTS[path]
        return [_merge(copy.deepcopy(item), v, f"{path}[{i}].") for i, v in enumerate(value)]
    if isinstance(default, dict) and not _is_interpolation(value):
        return _merge(default, value, path + ".")
    return value


def _is_interpolation(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Dot-list overrides as the original's scripts/train.py reads them: `--a.b=c` (c read as YAML; `[x,y]`
    is a list), a bare `--flag` = true; leading dashes dropped, hyphens in keys read as underscores."""
    for arg in overrides:
        key, has_value, text = arg.lstrip("-").partition("=")
        key = key.replace("-", "_")
        value = load_yaml(text, f"--{key}") if has_value else True
        node, parts = tree, key.split(".")
        for i, part in enumerate(parts[:-1]):
            path = ".".join(parts[: i + 1])
            if isinstance(node, dict) and part in node and node[part] is None and path in OPTIONAL_STRUCTS:
                node[part] = copy.deepcopy(OPTIONAL_STRUCTS[path])
            if not isinstance(node, dict) or not isinstance(node.get(part), dict):
                raise _error(f"--{key}: {path} is not a section of the original OLMo TrainConfig")
            node = node[part]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise _error(f"--{key}: not a field of the original OLMo TrainConfig; check its spelling")
        node[parts[-1]] = _merge_value(node[parts[-1]], value, key)
    return tree


def resolve(tree: dict[str, Any]) -> dict[str, Any]:
    """A copy of `tree` with every `${...}` replaced by its value."""
    return _Resolver(tree).resolve_node(tree, "")


class _Resolver:
    def __init__(self, root: dict[str, Any]):
        self.root, self.active = root, set()

    def resolve_node(self, node: Any, path: str) -> Any:
        if isinstance(node, dict):
            return {k: self.resolve_node(v, f"{path}{k}.") for k, v in node.items()}
        if isinstance(node, list):
            return [self.resolve_node(v, path) for v in node]
        if _is_interpolation(node):
            return self.resolve_string(node, path.rstrip("."))
        return node

    def resolve_string(self, text: str, where: str) -> Any:
        pieces = _split_interpolations(text, where)
        if len(pieces) == 1 and not isinstance(pieces[0], str):  # the whole value: keep its type
            return self.evaluate(pieces[0][0], where)
        out = []
        for piece in pieces:
            out.append(piece if isinstance(piece, str) else str(self.evaluate(piece[0], where)))
        return "".join(out)

    def evaluate(self, inner: str, where: str) -> Any:
        colon = _top_level_index(inner, ":")
        if colon is None:  # a key path, itself possibly built by an interpolation
            return self.lookup(str(self.resolve_string(inner, where)).strip(), where)
        name = inner[:colon].strip()
        args = [self._argument(a, where) for a in _split_top_level(inner[colon + 1 :], ",")]
        if name in RESOLVERS:
            return RESOLVERS[name](where, *args)
        raise _error(f"{where}: unknown resolver ${{{name}:...}}; the original knows {', '.join(RESOLVERS)}")

    def _argument(self, text: str, where: str) -> Any:
        text = text.strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            return text[1:-1]
        return self.resolve_string(text, where) if "${" in text else text

    def lookup(self, key: str, where: str) -> Any:
        if key in self.active:
            raise _error(f"{where}: the interpolation ${{{key}}} refers back to itself")
        node: Any = self.root
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise _error(f"{where}: ${{{key}}} names no field of the config")
            node = node[part]
        self.active.add(key)
        try:
            return self.resolve_node(node, key + ".")
        finally:
            self.active.discard(key)


def _split_interpolations(text: str, where: str) -> list[str | tuple[str]]:
    """Literal strings and (inner,) tuples for each top-level ${inner} of text."""
    pieces: list[str | tuple[str]] = []
    i = 0
    while True:
        start = text.find("${", i)
        if start < 0:
            if text[i:]:
                pieces.append(text[i:])
            return pieces
        if text[i:start]:
            pieces.append(text[i:start])
        depth, j = 0, start
        while j < len(text):
            if text.startswith("${", j):
                depth, j = depth + 1, j + 2
                continue
            if text[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        if depth:
            raise _error(f"{where}: unclosed interpolation in {text!r}")
        pieces.append((text[start + 2 : j],))
        i = j + 1


def _top_level_index(text: str, char: str) -> int | None:
    depth, quote = 0, None
    for i, c in enumerate(text):
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif text.startswith("${", i):
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == char and depth == 0:
            return i
    return None


def _split_top_level(text: str, char: str) -> list[str]:
    parts = []
    while (i := _top_level_index(text, char)) is not None:
        parts.append(text[:i])
        text = text[i + 1 :]
    return parts + [text]


def _env(where: str, name: str, *default: Any) -> Any:
    if name in os.environ:
        return os.environ[name]
    if default:
        return None if default[0] in ("null", None) else default[0]
    raise _error(f"{where}: environment variable {name} is not set and ${{oc.env:{name}}} has no default")


def _is_url(path: str) -> bool:
    return "://" in path


def _path_choose(where: str, *paths: str) -> str:
    for path in paths:
        if _is_url(path) or os.path.exists(path):
            return path
    raise _error(f"{where}: none of the paths of ${{path.choose:...}} exists: {', '.join(paths)}")


def _path_glob(where: str, *patterns: str) -> list[str]:
    out: list[str] = []
    for pattern in patterns:
        matches = sorted(_glob_any(pattern))
        if not matches:
            raise _error(f"{where}: ${{path.glob:{pattern}}} matches no file")
        out.extend(matches)
    return out


def _glob_any(pattern: str) -> list[str]:
    if not _is_url(pattern):
        return glob.glob(pattern)
    from olmo_fn.checkpoint.storage import url_to_fs

    fs, path = url_to_fs(pattern)
    protocol = pattern.split("://", 1)[0]
    return [f"{protocol}://{p}" for p in fs.glob(path)]


def _path_last_checkpoint(where: str, folder: str) -> str:
    from olmo_fn.checkpoint import find_latest

    latest = find_latest(folder)
    if latest is None:
        raise _error(f"{where}: ${{path.last_checkpoint:{folder}}}: no checkpoint in that folder")
    return latest


RESOLVERS = {
    "oc.env": _env,
    "env": _env,
    "path.choose": _path_choose,
    "path.glob": _path_glob,
    "path.last_checkpoint": _path_last_checkpoint,
}
