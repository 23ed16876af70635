"""Every bad config value is one line and exit 78: property-based, over the whole schema.

The keys come from the config dataclasses themselves (a new key is covered without touching this
file). For each key, hypothesis draws values of the wrong type or out of range; it also draws
arbitrary YAML documents and arbitrary text. `config.parse` must either accept the document or
raise ConfigError naming the key, never anything else; and pvsim-run, pvsim-meter and pvsim-pv
must turn a bad file into exactly one line on stderr and exit 78, without a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from pvsim import config
from pvsim.cli import run
from pvsim.daemons import lifecycle
from pvsim.daemons.meter import MeterDaemon
from pvsim.daemons.pv import PvDaemon

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
PROGRAM_SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                            suppress_health_check=[HealthCheck.too_slow,
                                                   HealthCheck.function_scoped_fixture])


def schema_keys(cls: type = config.Config, prefix: str = "") -> list[tuple[str, Any, dict]]:
    """(dotted key, type, field metadata) of every leaf key a user may write."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        key, tp = f"{prefix}{f.name}", hints[f.name]
        if dataclasses.is_dataclass(tp):
            keys += schema_keys(tp, key + ".")
        else:
            keys.append((key, tp, dict(f.metadata)))
    return keys


KEYS = schema_keys()
ANY_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20),
                       st.floats(allow_nan=True, allow_infinity=True))
NOT_A_MAPPING = st.one_of(ANY_SCALAR, st.lists(ANY_SCALAR, max_size=3))


def wrong_values(key: str, tp: Any, meta: dict) -> st.SearchStrategy:
    """Values that `key` must refuse."""
    origin = get_origin(tp)
    lo, hi = meta.get("lo"), meta.get("hi")
    if origin in (typing.Union, types.UnionType):  # an optional key: its type's wrong values
        inner = next(a for a in get_args(tp) if a is not type(None))
        return wrong_values(key, inner, meta).filter(lambda v: v is not None)
    if tp is int:
        bad = [st.text(max_size=10), st.booleans(), st.none(), st.lists(st.integers(), max_size=2),
               st.floats(allow_nan=False).filter(lambda x: not float(x).is_integer())]
        if lo is not None:
            bad.append(st.integers(max_value=math.ceil(lo) - 1))
        if hi is not None:
            bad.append(st.integers(min_value=math.floor(hi) + 1))
        return st.one_of(bad)
    if tp is float:
        bad = [st.text(max_size=10), st.booleans(), st.none(),  # safe_dump quotes "1.5": a string
               st.sampled_from([math.nan, math.inf, -math.inf]), st.lists(st.floats(), max_size=2)]
        if lo is not None:
            bad.append(st.floats(max_value=lo, exclude_max=not meta.get("lo_open"),
                                 allow_nan=False, allow_infinity=False))
        if hi is not None:
            bad.append(st.floats(min_value=hi, exclude_min=True, allow_nan=False,
                                 allow_infinity=False))
        return st.one_of(bad)
    if tp is str:
        bad = [st.integers(), st.booleans(), st.none(), st.lists(st.text(max_size=5), max_size=2),
               st.sampled_from(["", "   "])]
        special = {
            "timezone": st.sampled_from(["Mars/Olympus", "UTC+25", "Europe/", "../etc/passwd"]),
            "broker.url": st.sampled_from([
                "amqp://guest:secret@127.0.0.1:abc/%2F", "amqp://guest:secret@:5672/",
                "http://127.0.0.1:5672/", "amqp://guest:secret@127.0.0.1:99999/",
                "amqp://guest:secret@[::1/x", "amqp://guest:secret@host:5672/%2F?heartbeat=abc",
                "amqp://guest:secret@host:0/"]),
        }
        if key in special:
            bad.append(special[key])
        if key.endswith(".listen"):
            bad.append(st.sampled_from(["nowhere", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000",
                                        ":9762", "bad host!:9762"]))
        return st.one_of(bad)
    if origin is Literal:
        return st.one_of(st.text(max_size=10).filter(lambda v: v not in get_args(tp)), st.integers(),
                         st.none(), st.lists(st.text(max_size=3), max_size=2))
    if origin is tuple:
        if key == "meter.id":  # one id or a list: wrong ids, wrong items, duplicates
            return st.one_of(st.sampled_from(["", "a,b", "=cmd", 'quo"te', "x" * 65, "line\nbreak"]),
                             st.lists(st.integers(), min_size=1, max_size=2), st.just([]),
                             st.just(["m", "m"]), st.booleans(), st.none())
        if key == "pv.linke_turbidity":  # numbers in range, one or twelve of them
            return st.one_of(st.just([]), st.lists(st.just(3.0), min_size=2, max_size=11),
                             st.lists(wrong_values(key, float, meta), min_size=1, max_size=1),
                             NOT_A_MAPPING.filter(lambda v: not isinstance(v, list)))
        if key == "meter.holidays":  # dates, each once; an empty list is fine
            return st.one_of(NOT_A_MAPPING.filter(lambda v: not isinstance(v, list)),
                             st.lists(ANY_SCALAR.filter(lambda v: not _is_date(v)), min_size=1,
                                      max_size=2),
                             st.sampled_from([["2026-02-30"], ["25.12.2026"],
                                              [dt.datetime(2026, 12, 25, 10, 0)],
                                              [dt.date(2026, 12, 25), "2026-12-25"]]))
        empty = [] if meta.get("empty_ok") else [st.just([])]
        return st.one_of(NOT_A_MAPPING.filter(lambda v: not isinstance(v, list)), *empty,
                         st.lists(ANY_SCALAR, min_size=1, max_size=2))
    if origin is dict:
        return NOT_A_MAPPING
    raise AssertionError(f"no wrong values for {key} ({tp}): extend wrong_values()")


def _is_date(value: Any) -> bool:
    try:
        dt.date.fromisoformat(str(value).strip())
    except ValueError:
        return False
    return isinstance(value, str)


def document(key: str, value: Any) -> str:
    *sections, name = key.split(".")
    doc: dict = {name: value}
    for section in reversed(sections):
        doc = {section: doc}
    return yaml.safe_dump(doc, allow_unicode=True)


@st.composite
def bad_documents(draw) -> tuple[str, str]:
    key, tp, meta = draw(st.sampled_from(KEYS))
    return key, document(key, draw(wrong_values(key, tp, meta)))


def test_the_schema_walk_finds_every_key():
    names = {k for k, _, _ in KEYS}
    assert {"timezone", "broker.url", "broker.batch_size", "meter.id", "meter.seed", "pv.peak_kw",
            "output.sync_rows", "pricing.plans", "pricing.accounts"} <= names


@SETTINGS
@given(bad_documents())
def test_every_wrong_value_of_every_key_is_a_config_error_naming_the_key(case):
    key, text = case
    with pytest.raises(config.ConfigError) as caught:
        load_for_programs(text, "pvsim.yaml")
    assert caught.value.source == "pvsim.yaml"
    assert caught.value.key.startswith(key), (caught.value.key, key, text)
    assert "\n" not in str(caught.value) and "secret" not in str(caught.value)


def load_for_programs(text: str, source: str) -> config.Config:
    """What every program does with a file: parse it, then check what pika makes of the URL."""
    from pvsim.pipeline import broker
    cfg = config.parse(text, source)
    broker.check_url(cfg)
    return cfg


YAML_VALUES = st.recursive(
    st.one_of(ANY_SCALAR, st.sampled_from(list({k.split(".")[0] for k, _, _ in KEYS}))),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.one_of(st.text(max_size=8),
                                                         st.sampled_from([k.split(".")[-1] for k, _, _ in KEYS])),
                                               children, max_size=4)),
    max_leaves=12)


@SETTINGS
@given(st.one_of(YAML_VALUES.map(lambda v: yaml.safe_dump(v, allow_unicode=True)), st.text(max_size=200)))
def test_any_document_is_either_a_config_or_one_config_error(text):
    try:
        load_for_programs(text, "pvsim.yaml")
    except config.ConfigError as exc:
        assert str(exc).startswith("pvsim.yaml") and "\n" not in str(exc)


def one_line_and_78(main, argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


PROGRAMS = {
    "pvsim-run": lambda path: (run.main, ["--accelerated", "--broker", "none", "--config", path]),
    "pvsim-meter": lambda path: (lambda argv: lifecycle.main("pvsim-meter", "", "meter.listen",
                                                             MeterDaemon, argv), ["--config", path]),
    "pvsim-pv": lambda path: (lambda argv: lifecycle.main("pvsim-pv", "", "pv.listen", PvDaemon, argv),
                              ["--config", path]),
}


@pytest.mark.parametrize("prog", sorted(PROGRAMS))
@PROGRAM_SETTINGS
@given(case=bad_documents())
def test_each_program_says_one_line_and_exits_78(prog, case, tmp_path):
    key, text = case
    path = Path(tmp_path) / "pvsim.yaml"
    path.write_text(text, encoding="utf-8")
    main, argv = PROGRAMS[prog](str(path))
    code, err = one_line_and_78(main, argv)
    assert code == 78, (text, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: {path}: {key}"), (lines[0], key)
    assert "Traceback" not in err and "secret" not in err
