"""The converter: a YAML mapping into a schema dataclass, checked key by key, recursively.

Generic over any dataclass: it knows types (int, float, str, bool, dates, Literal choices,
optional values, lists, mappings, nested sections) and reads everything else about a key, its
bounds and checks, from the field's spec (pvsim/config/keyspec.py). It names no key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import types
import typing
from types import NoneType
from typing import Any, Literal, get_args, get_origin

from pvsim.config.errors import ConfigError, describe, join_key, shown
from pvsim.config.keyspec import NO_SPEC, Spec, spec_of

MAX_STRING_CHARS = 4096    # a path (PATH_MAX), a URL, a name


def build(cls: type, data: Any, source: str, prefix: str) -> Any:
    """Build dataclass `cls` from a mapping, checking keys, types and ranges recursively."""
    if not isinstance(data, dict):
        raise ConfigError(source, prefix or "(top level)", f"expected a mapping, got {describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not spec_of(f).internal}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = join_key(prefix, unknown[0])
        raise ConfigError(source, key, f"unknown key (known keys here: {', '.join(fields)})")
    values = {}
    for name, fld in fields.items():
        key = join_key(prefix, name)
        if name in data:
            values[name] = convert(hints[name], data[name], source, key, spec_of(fld))
        elif fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING:
            raise ConfigError(source, key, "missing (this key is required)")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:  # defensive: dataclass construction problems
        raise ConfigError(source, prefix, str(exc))


def convert(tp: Any, value: Any, source: str, key: str, about: Spec = NO_SPEC) -> Any:
    """`value` as type `tp`, within `about`'s bounds and passing its check, or a ConfigError."""
    origin, args = get_origin(tp), get_args(tp)
    if dataclasses.is_dataclass(tp):
        # A section whose keys are all commented out is empty (null in YAML): its defaults.
        return build(typing.cast(type, tp), {} if value is None else value, source, key)
    if origin in (typing.Union, types.UnionType) and NoneType in args:
        if value is None:
            return None
        inner = next(a for a in args if a is not NoneType)
        return convert(inner, value, source, key, about)
    if origin is tuple:
        value = _items(args[0], value, source, key, about)
    elif origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(source, key, f"expected a mapping, got {describe(value)}")
        value = {str(k): convert(args[1], v, source, join_key(key, k)) for k, v in value.items()}
    else:
        value = _scalar(tp, value, source, key, about)
    if about.check is not None:
        about.check(value, source, key)
    return value


def _items(item: Any, value: Any, source: str, key: str, about: Spec) -> tuple:
    """A list: each item converted and checked (`about.each`); ids, names and dates must be
    unique, numbers (monthly values) may repeat."""
    if about.one_or_list and isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not (value or about.empty_ok):
        kind = "a list" if about.empty_ok else "a non-empty list"
        raise ConfigError(source, key, f"expected {kind}, got {describe(value)}")
    each = dataclasses.replace(about, check=about.each, each=None)
    items = tuple(convert(item, v, source, f"{key}[{i}]", each) for i, v in enumerate(value))
    return items if item is float else _check_unique(items, source, key)


def _scalar(tp: Any, value: Any, source: str, key: str, about: Spec) -> Any:
    if get_origin(tp) is Literal:
        if value not in get_args(tp):
            choices = ", ".join(repr(a) for a in get_args(tp))
            raise ConfigError(source, key, f"must be one of {choices}, got {shown(value)}")
        return value
    if tp is dt.date:
        return _date(value, source, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(source, key, f"expected true or false, got {describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(source, key, f"expected an integer, got {describe(value)}")
        return _check_range(value, source, key, about)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(source, key, f"expected a number, got {describe(value)}")
        return _check_range(float(value), source, key, about)
    if tp is str:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(source, key, f"expected a non-empty string, got {describe(value)}")
        return check_length(value, source, key)
    raise ConfigError(source, key, f"unsupported type {tp}")  # a schema bug, not a user error


def check_length(value: str, source: str, key: str) -> str:
    """Any string: at most MAX_STRING_CHARS (a path, a URL, a name is far shorter)."""
    if len(value) > MAX_STRING_CHARS:
        raise ConfigError(source, key, f"{len(value):,} characters: pvsim reads at most "
                          f"{MAX_STRING_CHARS:,} ({shown(value)})")
    return value


def _date(value: Any, source: str, key: str) -> dt.date:
    """A calendar date, written YYYY-MM-DD (quoted or not: the loader leaves both as text)."""
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ConfigError(source, key, f"expected a date YYYY-MM-DD, got {describe(value)}")


def _check_range(value: float, source: str, key: str, about: Spec) -> Any:
    lo, hi = about.lo, about.hi
    if lo is not None and (value < lo or (about.lo_open and value == lo)):
        bound = f"greater than {lo:g}" if about.lo_open else f"at least {lo:g}"
        raise ConfigError(source, key, f"must be {bound}, got {shown(value)}")
    if hi is not None and value > hi:
        raise ConfigError(source, key, f"must be at most {hi:g}, got {shown(value)}")
    return value


def _check_unique(items: tuple, source: str, key: str) -> tuple:
    seen: set = set()
    for item in items:
        ident = getattr(item, "id", item)
        if ident in seen:
            raise ConfigError(source, key, f"{shown(ident)} appears twice")
        seen.add(ident)
    return items
