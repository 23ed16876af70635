"""docs/reference/config.md, generated from the schema: every key with its type, default, unit
and meaning, as pvsim/config/schema.py says them. A test (tests/test_config_docs.py) fails when
the committed file differs from what this generates."""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import types
import typing
from types import NoneType
from typing import Any, Literal, get_args, get_origin

from pvsim.config.keyspec import Key, Spec, default_of, walk
from pvsim.config.schema import Config

COMMAND = "PYTHONPATH=. python3 -m pvsim.config --reference > docs/reference/config.md"
INTRO = f"""\
# Configuration reference

<!-- Generated from pvsim/config/schema.py by `{COMMAND}`: edit the schema, not this file. -->

pvsim-meter, pvsim-pv and pvsim-run read one YAML file: `/etc/pvsim/pvsim.yaml`, or the file
given with `--config FILE`. Every key is optional; a missing key takes the default below. A
mistake (an unknown key, a wrong type, a value out of range, malformed YAML, a key given twice)
stops the program with one line naming the file, the key and the problem, and exit code 78.
The shipped, commented file is `config/pvsim.yaml`; the manual page is pvsim.yaml(5).

A list key takes a YAML list (`[a, b]` or one `- item` a line); a key of a list's items is
written `list[].key`.
"""


def markdown() -> str:
    """The whole reference, one table per section, in the schema's order."""
    out, section = [INTRO], None
    for key in walk(Config):
        if key.section != section:
            section = key.section
            out.append(_heading(section))
        out.append(_row(key))
    return "\n".join(out) + "\n"


def _heading(section: str) -> str:
    cls = _section_class(section)
    title = f"`{section}`" if section else "The top level"
    doc = inspect.cleandoc(cls.__doc__ or "")
    return (f"\n## {title}\n\n{doc}\n\n| key | type | default | unit | meaning |\n"
            "|---|---|---|---|---|")


def _section_class(section: str) -> type:
    if not section:
        return Config
    tp = typing.get_type_hints(Config)[section]
    return typing.cast(type, tp)


def _row(key: Key) -> str:
    cells = [f"`{key.name}`", _type(key.type, key.spec), _default(key), key.spec.unit, key.spec.doc]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _type(tp: Any, about: Spec) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin in (typing.Union, types.UnionType) and NoneType in args:
        inner = next(a for a in args if a is not NoneType)
        return f"{_type(inner, about)}, or unset"
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is tuple:
        item = args[0]
        if dataclasses.is_dataclass(item):
            return "list of mappings (keys below)"
        each = dataclasses.replace(about, check=about.each)
        text = f"list of: {_type(item, each)}"
        if about.one_or_list:
            text = f"{_type(item, each)}; or a list of them"
        if about.check is not None:
            text += f"; {about.check.accepts}"
        return text
    if origin is dict:
        return f"mapping of text to {_type(args[1], Spec())}"
    if tp is dt.date:
        return "date (YYYY-MM-DD)"
    names = {int: "integer", float: "number", str: "text", bool: "true or false"}
    text = names.get(tp, str(tp))
    if about.check is not None:
        text = about.check.accepts
    return text + _bounds(about)


def _bounds(about: Spec) -> str:
    lo, hi = about.lo, about.hi
    low = None if lo is None else (f"greater than {_number(lo)}" if about.lo_open else None)
    if lo is not None and hi is not None and low is None:
        return f", {_number(lo)} to {_number(hi)}"
    parts = [low or (f"at least {_number(lo)}" if lo is not None else None),
             f"at most {_number(hi)}" if hi is not None else None]
    return "".join(f", {p}" for p in parts if p)


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def _default(key: Key) -> str:
    if key.default is dataclasses.MISSING:
        return "required"
    if key.default is None or key.default == "":
        return "unset"
    value = key.default
    if key.spec.one_or_list and len(value) == 1:
        value = value[0]
    return f"`{_value(value)}`"


def _value(value: Any) -> str:
    """A default as it would be written in the file (YAML flow style)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        given = [f for f in dataclasses.fields(value)
                 if default_of(f) is dataclasses.MISSING or getattr(value, f.name) != default_of(f)]
        return "{" + ", ".join(f"{f.name}: {_value(getattr(value, f.name))}" for f in given) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)
