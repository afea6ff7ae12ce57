"""Reading a config: plain data (TOML) and ``key=value`` overrides into dataclasses."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args, get_origin

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from rnnkit.config._schema import (
    _NONE,
    _UNIONS,
    ConfigError,
    T,
    _fields,
    _join,
    _section,
    _type_error,
    _unknown,
)
from rnnkit.config._write import to_dict

_BOOLS = {"true": True, "yes": True, "on": True, "1": True,
          "false": False, "no": False, "off": False, "0": False}


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build ``cls`` from plain data (as read from TOML), checking every key, type and value."""
    fields = _fields(cls)
    if not isinstance(data, Mapping):
        raise _type_error(cls, data, where or cls.__name__)
    for name in data:
        if name not in fields:
            raise _unknown(str(name), list(fields), where)
    kwargs = {}
    for name, (f, tp) in fields.items():
        if name in data:
            kwargs[name] = _convert(tp, data[name], _join(where, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing config key {_join(where, name)!r}")
    try:
        return cls(**kwargs)  # runs the dataclass's own __post_init__ value checks
    except ValueError as e:
        raise ConfigError(f"{where or cls.__name__}: {e}") from e


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return value
    if origin in _UNIONS:
        return _convert_union(tp, value, key)
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
    elif _section(tp) is not None:
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return from_dict(tp, value, key)
    elif origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, (list, tuple)):
            return _convert_sequence(tp, value, key)
    elif tp is float or tp is int:
        accepted = (int, float) if tp is float else int
        if isinstance(value, accepted) and not isinstance(value, bool):
            return tp(value)
    elif tp is _NONE:
        if value is None:
            return None
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise _type_error(tp, value, key)


def _convert_union(tp: Any, value: Any, key: str) -> Any:
    args = get_args(tp)
    if value is None and _NONE in args:
        return None
    inner = [a for a in args if a is not _NONE]
    for arg in inner:
        try:
            return _convert(arg, value, key)
        except ConfigError as e:  # keep errors found deeper: in a section, a list item, a check
            if len(inner) == 1 and not str(e).startswith(f"{key}: expected "):
                raise
    raise _type_error(tp, value, key)


def _convert_sequence(tp: Any, value: Sequence[Any], key: str) -> list | tuple:
    args = get_args(tp)
    if get_origin(tp) is not tuple and tp is not tuple:
        return [_convert(args[0] if args else Any, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if len(args) == 2 and args[1] is Ellipsis:
        args = (args[0],) * len(value)
    elif not args:
        args = (Any,) * len(value)
    elif len(args) != len(value):
        raise _type_error(tp, value, key)
    return tuple(_convert(t, v, f"{key}[{i}]") for i, (t, v) in enumerate(zip(args, value)))


def _parse_text(tp: Any, text: str, key: str) -> Any:
    """Read command-line text as ``tp``; text that does not fit is left for _convert to refuse."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in _UNIONS:
        if _NONE in args and text.lower() in ("none", "null"):
            return None
        for arg in (a for a in args if a is not _NONE):
            value = _parse_text(arg, text, key)
            try:
                _convert(arg, value, key)
                return value
            except ConfigError:
                pass
        return text
    if origin is Literal:
        return next((a for a in args if str(a) == text), text)
    if tp is bool:
        return _BOOLS.get(text.lower(), text)
    if tp is int or tp is float:
        try:
            return tp(text)
        except ValueError:
            return text
    if origin in (list, tuple) or tp in (list, tuple):
        return _parse_sequence(tp, text, key)
    return text


def _parse_sequence(tp: Any, text: str, key: str) -> Any:
    if text.startswith("["):
        try:
            return tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{key}: cannot read {text!r} as a TOML array: {e}") from e
    items = [s.strip() for s in text.split(",")] if text else []
    args = [a for a in get_args(tp) if a is not Ellipsis] or [Any]
    return [_parse_text(args[min(i, len(args) - 1)], s, key) for i, s in enumerate(items)]


def _apply_override(cls: type, data: dict, text: str) -> None:
    name, sep, raw = (text[2:] if text.startswith("--") else text).partition("=")
    name = name.strip()
    if not sep or not name:
        raise ConfigError(f"override {text!r} must look like key=value, e.g. model.hidden_size=8")
    parts, section, node, where = name.split("."), cls, data, ""
    for i, part in enumerate(parts):
        fields = _fields(section)
        if part not in fields:
            raise _unknown(part, list(fields), where)
        tp, where = fields[part][1], _join(where, part)
        if i < len(parts) - 1:
            section = _section(tp)
            if section is None:
                raise ConfigError(f"override {text!r}: {where!r} is not a section")
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
    value = _parse_text(tp, raw.strip(), where)
    if _section(tp) is not None and value is not None:
        raise ConfigError(f"override {text!r}: {where!r} is a section; set {where}.<key>=value")
    node[parts[-1]] = value


def _read_toml(path: str | os.PathLike) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config file {os.fspath(path)}: {e.strerror}") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{os.fspath(path)}: invalid TOML: {e}") from e


def load(cls: type[T], path: str | os.PathLike | None = None,
         overrides: Sequence[str] = (), *, base: Any = None) -> T:
    """Read a TOML file (optional), apply ``key.path=value`` overrides in order, build ``cls``.

    ``base``, an instance of ``cls``, starts from its values instead of a file (a resumed
    run: its own config, then what the command line changes)."""
    if base is not None and path is not None:
        raise ConfigError("give a config file or a base config, not both")
    data = to_dict(base) if base is not None else _read_toml(path) if path is not None else {}
    for text in [overrides] if isinstance(overrides, str) else overrides:
        _apply_override(cls, data, text)
    return from_dict(cls, data)
