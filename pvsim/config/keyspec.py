"""What the schema says about one key besides its Python type and default: its meaning, unit,
bounds and checks, carried in the dataclass field's metadata (`field(default=..., metadata=
spec(...))`), and the walk that lists every key a file may set.

The converter (pvsim/config/convert.py) reads bounds and checks from here, the reference
(docs/reference/config.md) everything: adding a key is adding a field, never editing either.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, get_args, get_origin

from pvsim.config.checks import Check


@dataclass(frozen=True)
class Spec:
    """One key's contract. `lo`/`hi` bound a number (each number of a list), `lo_open` makes
    `lo` itself refused; `check` tests the converted value (a whole list), `each` each item of a
    list; `empty_ok` lets a list be empty; `one_or_list` takes one value for a list of one;
    `internal` marks a field no file sets."""

    doc: str = ""
    unit: str = ""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    check: Check | None = None
    each: Check | None = None
    empty_ok: bool = False
    one_or_list: bool = False
    internal: bool = False


NO_SPEC = Spec()


def spec(doc: str, **kwargs: Any) -> Mapping[str, Spec]:
    """A field's metadata: `field(default=3.25, metadata=spec("The peak.", unit="kW", lo=0))`."""
    return {"spec": Spec(doc, **kwargs)}


def spec_of(fld: dataclasses.Field) -> Spec:
    return fld.metadata.get("spec", NO_SPEC)


@dataclass(frozen=True)
class Key:
    """A key a file may set: its dotted name (`pricing.plans[].id` for a field of a list's
    items), its Python type, its default (`dataclasses.MISSING` when required) and its spec."""

    name: str
    type: Any
    default: Any
    spec: Spec

    @property
    def section(self) -> str:
        return self.name.split(".")[0] if "." in self.name else ""

    @property
    def leaf(self) -> str:
        return self.name.rpartition(".")[2]


def walk(cls: type, prefix: str = "", items: bool = True) -> Iterator[Key]:
    """Every key of dataclass `cls`, sections descended into; with `items`, the fields of a
    list's dataclass items too (`pricing.plans[].unit_rate`), after the list's own key."""
    hints = typing.get_type_hints(cls)
    for fld in dataclasses.fields(cls):
        about = spec_of(fld)
        if about.internal:
            continue
        name, tp = prefix + fld.name, hints[fld.name]
        if dataclasses.is_dataclass(tp):
            yield from walk(tp, name + ".", items)
            continue
        yield Key(name, tp, default_of(fld), about)
        item = get_args(tp)[0] if get_origin(tp) is tuple and get_args(tp) else None
        if items and dataclasses.is_dataclass(item):
            yield from walk(typing.cast(type, item), name + "[].", items)


def default_of(fld: dataclasses.Field) -> Any:
    """A field's default, made by its factory if it has one; `dataclasses.MISSING` if none."""
    return fld.default_factory() if fld.default_factory is not dataclasses.MISSING else fld.default


def spec_for(cls: type, name: str) -> Spec:
    """The spec of dotted key `name` of `cls` (a list's item, `meter.id[3]`, is its list's)."""
    name = name.partition("[")[0]
    return next((k.spec for k in walk(cls) if k.name == name), NO_SPEC)
