"""Typed configuration from dataclasses, TOML files and dotted command-line overrides.

A configuration is a (nested) ``@dataclass`` whose fields carry a help text::

    @dataclass
    class ModelConfig:
        cell: Literal["rnn", "lstm", "gru"] = option("lstm", "recurrent cell")
        hidden_size: int = option(256, "units per layer")

        def __post_init__(self) -> None:
            positive(self, "hidden_size")

    @dataclass
    class TrainConfig:
        lr: float = option(1e-3, "learning rate")
        betas: tuple[float, float] = option((0.9, 0.999), "Adam betas")
        seed: int | None = option(None, "random seed; none picks one")
        model: ModelConfig = option(ModelConfig(), "the network")

The matching TOML file names only what differs from the defaults; a nested dataclass is a
table::

    lr = 3e-4
    betas = [0.9, 0.98]

    [model]
    cell = "gru"

``load(TrainConfig, "run.toml", ["model.hidden_size=512", "--seed=none"])`` reads the file,
applies the overrides (the value text is read according to the field's type: numbers,
booleans ``true/false/yes/no/on/off/1/0``, ``none``/``null`` for optional fields, lists as
``[1, 2]`` or ``1,2``) and builds the instance. Unknown keys, wrong types and the values
refused by a dataclass's own ``__post_init__`` all raise ``ConfigError`` with one line naming
the dotted key.
``to_dict``/``dumps_toml`` write a config back (``None`` is left out of TOML) and ``describe``
lists every key with its default and help. Define config classes at module level: their
annotations are resolved with ``typing.get_type_hints``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import json
import os
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = [
    "ConfigError", "describe", "dumps_toml", "from_dict", "in_unit_interval", "load",
    "non_negative", "option", "positive", "to_dict",
]

T = TypeVar("T")
_NONE = type(None)
_UNIONS = (Union, types.UnionType)
_BOOLS = {"true": True, "yes": True, "on": True, "1": True,
          "false": False, "no": False, "off": False, "0": False}


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


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as nested plain dicts and lists (tuples become lists), for TOML or JSON."""
    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    return plain(cfg)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # also 'inf', '-inf' and 'nan', which TOML spells the same
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} ({type(value).__name__}) to TOML")


def _toml_lines(table: dict[str, Any], prefix: str) -> list[str]:
    lines = [f"{k} = {_toml_value(v)}" for k, v in table.items()
             if v is not None and not isinstance(v, dict)]
    for k, v in table.items():
        if isinstance(v, dict):
            lines += ["", f"[{prefix}{k}]", *_toml_lines(v, f"{prefix}{k}.")]
    return lines


def dumps_toml(cfg: Any) -> str:
    """The config as a TOML document; None values are left out (TOML has no null)."""
    return "\n".join(_toml_lines(to_dict(cfg), "")).lstrip("\n") + "\n"


def describe(cls: type) -> list[tuple[str, str, str]]:
    """(dotted key, default repr, help) for every leaf field, for ``--help`` output."""
    return _describe(cls, "", None)


def _describe(cls: type, prefix: str, defaults: Any) -> list[tuple[str, str, str]]:
    rows = []
    for name, (f, tp) in _fields(cls).items():
        if defaults is not None:
            default = getattr(defaults, name)
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = f.default
        section = _section(tp)
        if section is not None and (default is None or isinstance(default, section)):
            rows += _describe(section, _join(prefix, name), default)
        else:
            shown = "required" if default is dataclasses.MISSING else repr(default)
            rows.append((_join(prefix, name), shown, f.metadata.get("help", "")))
    return rows
