"""Configs to and from plain dicts and YAML (the `config.yaml` inside every checkpoint), and the CLI.

The CLI is tyro over the dataclasses, with the original OLMo's spellings accepted too:
`--data.paths=[a.npy,b.npy]` is a list of two paths (plain tyro would read one path named "[a.npy,b.npy]"),
and hyphens or underscores in flag names both work.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, TypeVar

import yaml

from olmo_fn.errors import ConfigError

T = TypeVar("T")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass as nested plain dicts/lists/scalars, ready for YAML or JSON."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(cfg)


def config_from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from a dict as written by `config_to_dict`; unknown keys and values of the
    wrong type are a ConfigError naming the field."""
    return cls(**typed_fields(cls, data, where))


def typed_fields(cls: type, data: dict[str, Any], where: str = "") -> dict[str, Any]:
    """The keyword arguments of dataclass `cls` in `data`, each checked against (and converted to) its
    field's type: a ConfigError naming `where` + the field for an unknown key or a value of another type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where.rstrip('.') or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names, key=str)
    if unknown:
        raise ConfigError(f"{where}{unknown[0]}: unknown config field; remove it or check its spelling")
    return {k: _convert(hints[k], v, f"{where}{k}") for k, v in data.items()}


def _convert(tp: Any, value: Any, where: str) -> Any:
    """`value` (as YAML or JSON read it) as type `tp`, checked: a ConfigError naming the field otherwise."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where) if len(inner) == 1 else value
    if value is None:
        raise ConfigError(f"{where}: must be set (null is not allowed here)")
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else config_from_dict(tp, value, where + ".")
    if origin is typing.Literal:
        if not any(value == a and type(value) is type(a) for a in args):
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
            return tuple(_convert(a, v, where) for a, v in zip(args, value))
        items = [_convert(args[0], v, where) for v in value] if args else list(value)
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        if not args:
            return dict(value)
        return {_convert(args[0], k, where): _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    return _scalar(tp, value, where)


def _scalar(tp: Any, value: Any, where: str) -> Any:
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)  # ints, and strings such as 1e-6 (which YAML 1.1 reads as text)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is str and not isinstance(value, str):
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # max_duration: 1000
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def dump_yaml(cfg: Any) -> str:
    """YAML text of a config dataclass (or dict), in field order."""
    data = cfg if isinstance(cfg, dict) else config_to_dict(cfg)
    return yaml.safe_dump(data, sort_keys=False)


_LIST_ARG = re.compile(r"^(--[\w.\-]+)=\[(.*)\]$")


def normalize_args(argv: list[str]) -> list[str]:
    """Accept the original OLMo's `--key=[a,b]` list syntax by expanding it to tyro's `--key a b`."""
    out: list[str] = []
    for arg in argv:
        match = _LIST_ARG.match(arg)
        if match:
            out.append(match.group(1))
            out.extend(item.strip() for item in match.group(2).split(",") if item.strip())
        else:
            out.append(arg)
    return out


def parse_cli(
    cls: type[T], default: T, argv: list[str] | None = None, description: str | None = None, program: str = ""
) -> T:
    """tyro over `cls`, with `default` (a recipe's config) providing every default shown in --help; flags that
    do not parse are a ConfigError of one line: what tyro's framed message says, and `python PROGRAM --help`
    (PROGRAM: the running script unless given)."""
    import contextlib
    import io
    import sys

    import tyro

    args = normalize_args(sys.argv[1:] if argv is None else argv)
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            return tyro.cli(
                cls, default=default, args=args, description=description, config=(tyro.conf.AvoidSubcommands,)
            )
    except SystemExit as e:
        if not e.code:  # --help
            raise
        raise ConfigError(
            f"{_framed_message(said.getvalue())}; see `python {program or sys.argv[0]} --help`"
        ) from None


def _framed_message(text: str) -> str:
    """The message of tyro's framed error: its title, a rule, the message lines up to the next rule (drawn
    with box characters on a terminal, with dashes elsewhere); the message lines joined."""
    texts: list[str] = []
    for line in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines():  # without terminal colours
        line = line.strip().strip("│╭╮╰╯|").strip()
        if line and not line.strip("─-+ "):  # a rule
            if len(texts) > 1:
                break
            continue
        if line:
            texts.append(line.strip("─ "))
    return " ".join(texts[1:] or texts) or "the flags do not parse"
