"""Writing a config back: plain data, TOML, and the key list for ``--help``."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from rnnkit.config._schema import ConfigError, _fields, _join, _section


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
