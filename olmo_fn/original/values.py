"""Values of a resolved original config read as the original's OmegaConf schema reads them: a number field
takes numbers (and numeric strings such as `1e-6`), a bool field true/false (and yes/no, on/off); anything
else is a ConfigError naming the field, never a TypeError or a silently truthy string."""

from __future__ import annotations

import math
from typing import Any

from olmo_fn.errors import ConfigError


def get(tree: dict[str, Any], key: str) -> Any:
    """The value at a dotted key (None where a section or the key is absent)."""
    node: Any = tree
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def number(value: Any, where: str, kind: type) -> Any:
    """value as a float, or (kind int) as an int it equals."""
    try:
        if isinstance(value, bool):
            raise TypeError
        result = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if kind is int:
        if not math.isfinite(result) or result != int(result):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(result)
    return result


def int_at(tree: dict[str, Any], key: str, optional: bool = False) -> int | None:
    value = get(tree, key)
    return None if value is None and optional else number(value, key, int)


def float_at(tree: dict[str, Any], key: str, optional: bool = False) -> float | None:
    value = get(tree, key)
    return None if value is None and optional else number(value, key, float)


_TRUE, _FALSE = ("true", "yes", "on", "y", "1"), ("false", "no", "off", "n", "0")


def flag_at(tree: dict[str, Any], key: str) -> bool:
    """A bool field (null reads as false, as the original's `bool(...)` of an unset option)."""
    value = get(tree, key)
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    raise ConfigError(f"{key}: expected true or false, got {value!r}")


def path_list(value: Any, key: str) -> list[Any] | None:
    """A list (of paths) or None; a single string is refused, not read as a list of its characters."""
    if value is not None and not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list, got {value!r}")
    return value
