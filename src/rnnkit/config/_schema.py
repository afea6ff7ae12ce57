"""The vocabulary of a config: fields with help texts, value checks, and the errors."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import types
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")
_NONE = type(None)
_UNIONS = (Union, types.UnionType)


class ConfigError(ValueError):
    """A configuration that cannot be used, told in one line."""


def option(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with a help text; mutable defaults are copied for every instance."""
    metadata = {**kw.pop("metadata", {}), "help": help}
    if dataclasses.is_dataclass(default) or isinstance(default, (list, dict, set)):
        kw["default_factory"] = functools.partial(copy.deepcopy, default)
    elif default is not dataclasses.MISSING:
        kw["default"] = default
    return dataclasses.field(metadata=metadata, **kw)


def _require(obj: Any, names: Sequence[str], ok: Callable[[Any], bool], what: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None and not ok(value):
            raise ValueError(f"{name} must be {what}, got {value!r}")


def positive(obj: Any, *names: str) -> None:
    """Raise ValueError unless every named attribute (when not None) is > 0."""
    _require(obj, names, lambda v: v > 0, "> 0")


def non_negative(obj: Any, *names: str) -> None:
    """Raise ValueError unless every named attribute (when not None) is >= 0."""
    _require(obj, names, lambda v: v >= 0, ">= 0")


def in_unit_interval(obj: Any, *names: str) -> None:
    """Raise ValueError unless every named attribute (when not None) is in [0, 1)."""
    _require(obj, names, lambda v: 0 <= v < 1, "in [0, 1)")


@functools.lru_cache(maxsize=None)
def _fields(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"expected a dataclass type, got {cls!r}")
    hints = get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls) if f.init}


def _section(tp: Any) -> type | None:
    """The dataclass behind ``tp`` or ``tp | None``, or None when ``tp`` is a leaf type."""
    if get_origin(tp) in _UNIONS:
        inner = [a for a in get_args(tp) if a is not _NONE]
        tp = inner[0] if len(inner) == 1 else None
    return tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _type_name(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin in _UNIONS:
        return " | ".join(_type_name(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if tp is _NONE:
        return "None"
    if _section(tp) is not None:
        return "table"
    return tp.__name__ if isinstance(tp, type) and not args else str(tp)


def _type_error(tp: Any, value: Any, key: str) -> ConfigError:
    return ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def _unknown(name: str, known: Sequence[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = (f"did you mean {_join(where, close[0])!r}?" if close
            else "valid keys: " + ", ".join(_join(where, k) for k in known))
    return ConfigError(f"unknown config key {_join(where, name)!r}; {hint}")
