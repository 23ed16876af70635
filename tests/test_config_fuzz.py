"""Every bad config value is one line and exit 78: property-based, over the whole schema.

The keys come from the config dataclasses themselves (a new key is covered without touching this
file). For each key, hypothesis draws values of the wrong type or out of range; it also draws
arbitrary YAML documents and arbitrary text. `config.parse` must either accept the document or
raise ConfigError naming the key, never anything else; and pvsim-run, pvsim-meter and pvsim-pv
must turn a bad file into exactly one line on stderr and exit 78, without a traceback.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import math
import re
import types
import typing
from types import NoneType
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings, strategies as st

from pvsim import config
from pvsim.config import checks
from pvsim.config.keyspec import Spec, walk
from pvsim.cli import run
from pvsim.daemons import lifecycle
from pvsim.daemons.meter import MeterDaemon
from pvsim.daemons.pv import PvDaemon

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
PROGRAM_SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                            suppress_health_check=[HealthCheck.too_slow,
                                                   HealthCheck.function_scoped_fixture])


def schema_keys() -> list[tuple[str, Any, Spec]]:
    """(dotted key, type, spec) of every leaf key a user may write (a list of plans is one)."""
    return [(k.name, k.type, k.spec) for k in walk(config.Config, items=False)]


KEYS = schema_keys()
ANY_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20),
                       st.floats(allow_nan=True, allow_infinity=True))
NOT_A_MAPPING = st.one_of(ANY_SCALAR, st.lists(ANY_SCALAR, max_size=3))


def wrong_values(key: str, tp: Any, meta: Spec) -> st.SearchStrategy:
    """Values that `key` must refuse, by its type and its spec (a new key of a known kind needs
    nothing here)."""
    origin = get_origin(tp)
    lo, hi = meta.lo, meta.hi
    if origin in (typing.Union, types.UnionType):  # an optional key: its type's wrong values
        inner = next(a for a in get_args(tp) if a is not NoneType)
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
            bad.append(st.floats(max_value=lo, exclude_max=not meta.lo_open,
                                 allow_nan=False, allow_infinity=False))
        if hi is not None:
            bad.append(st.floats(min_value=hi, exclude_min=True, allow_nan=False,
                                 allow_infinity=False))
        return st.one_of(bad)
    if tp is str:
        bad = [st.integers(), st.booleans(), st.none(), st.lists(st.text(max_size=5), max_size=2),
               st.sampled_from(["", "   "])]
        special = {
            checks.TIME_ZONE: st.sampled_from(["Mars/Olympus", "UTC+25", "Europe/", "../etc/passwd"]),
            checks.AMQP_URL: st.sampled_from([
                "amqp://guest:secret@127.0.0.1:abc/%2F", "amqp://guest:secret@:5672/",
                "http://127.0.0.1:5672/", "amqp://guest:secret@127.0.0.1:99999/",
                "amqp://guest:secret@[::1/x", "amqp://guest:secret@host:5672/%2F?heartbeat=abc",
                "amqp://guest:secret@host:0/"]),
        }
        if meta.check in special:
            bad.append(special[meta.check])
        if meta.check is checks.LISTEN:
            bad.append(st.sampled_from(["nowhere", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000",
                                        ":9762", "bad host!:9762"]))
        return st.one_of(bad)
    if origin is Literal:
        return st.one_of(st.text(max_size=10).filter(lambda v: v not in get_args(tp)), st.integers(),
                         st.none(), st.lists(st.text(max_size=3), max_size=2))
    if origin is tuple:
        if meta.each is checks.METER:  # one id or a list: wrong ids, wrong items, duplicates
            return st.one_of(st.sampled_from(["", "a,b", "=cmd", 'quo"te', "x" * 65, "line\nbreak"]),
                             st.lists(st.integers(), min_size=1, max_size=2), st.just([]),
                             st.just(["m", "m"]), st.booleans(), st.none())
        if meta.check is checks.ONE_OR_TWELVE:  # numbers in range, one or twelve of them
            return st.one_of(st.just([]), st.lists(st.just(3.0), min_size=2, max_size=11),
                             st.lists(wrong_values(key, float, meta), min_size=1, max_size=1),
                             NOT_A_MAPPING.filter(lambda v: not isinstance(v, list)))
        if get_args(tp)[0] is dt.date:  # dates, each once; an empty list is fine
            return st.one_of(NOT_A_MAPPING.filter(lambda v: not isinstance(v, list)),
                             st.lists(ANY_SCALAR.filter(lambda v: not _is_date(v)), min_size=1,
                                      max_size=2),
                             st.sampled_from([["2026-02-30"], ["25.12.2026"],
                                              [dt.datetime(2026, 12, 25, 10, 0)],
                                              [dt.date(2026, 12, 25), "2026-12-25"]]))
        empty = [] if meta.empty_ok else [st.just([])]
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
    lambda children: st.one_of(
        st.lists(children, max_size=3),
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
    path, err = program_refuses(prog, text, Path(tmp_path))
    assert err.startswith(f"{prog}: {path}: {key}"), (err, key)
    assert "Traceback" not in err and "secret" not in err


def program_refuses(prog: str, text: str, tmp_path: Path) -> tuple[Path, str]:
    """`prog` with `text` as its config must exit 78 with one error line of bounded length:
    the config's path and that line."""
    path = tmp_path / "pvsim.yaml"
    path.write_text(text, encoding="utf-8")
    main, argv = PROGRAMS[prog](str(path))
    code, err = one_line_and_78(main, argv)
    assert code == 78, (text[:200], err[:300])
    lines = err.splitlines()
    assert len(lines) == 1 and len(lines[0]) <= config.MAX_ERROR_CHARS + 100, err[:300]
    return path, lines[0]


# --- issue 18: what no file may do, whatever the key -------------------------------------------
# The loader caps what it reads (config.MAX_*): an alias bomb, nesting thousands of levels deep,
# an integer of thousands of digits, a key given twice, a string of megabytes. Each shape is
# drawn on any key of the schema; each must be one ConfigError naming the key (or, for YAML the
# parser cannot read, the line), one short line, never a traceback nor minutes of work.

LEAF_KEYS = [k for k, _, _ in KEYS]
HOSTILE_SETTINGS = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                            suppress_health_check=[HealthCheck.too_slow,
                                                   HealthCheck.data_too_large])


def nest(key: str, value_text: str) -> str:
    """`key: VALUE` in block style, VALUE already YAML text (a flow collection or a scalar)."""
    *sections, name = key.split(".")
    head = "".join(f"{'  ' * n}{s}:\n" for n, s in enumerate(sections))
    return f"{head}{'  ' * len(sections)}{name}: {value_text}\n"


@st.composite
def alias_bombs(draw) -> tuple[str, str]:
    """The billion laughs on a key: anchors each a list of `width` aliases of the previous."""
    key = draw(st.sampled_from(LEAF_KEYS))
    width, levels = draw(st.integers(2, 12)), draw(st.integers(1, 14))
    leaf = draw(st.sampled_from(["lol", "1", "{a: 1}", "''", "null"]))
    items = [f"&x0 {leaf}"] + [f"&x{i} [" + ",".join([f"*x{i - 1}"] * width) + "]"
                               for i in range(1, levels + 1)]
    return key, nest(key, f"[{', '.join(items)}]")


@st.composite
def deep_nesting(draw) -> tuple[str, str]:
    key = draw(st.sampled_from(LEAF_KEYS))
    depth = draw(st.one_of(st.integers(config.MAX_DEPTH - 2, config.MAX_DEPTH + 2),
                           st.integers(2, 20_000)))
    style = draw(st.sampled_from(["lists", "mappings", "block", "mixed"]))
    if style == "lists":
        return key, nest(key, "[" * depth + "]" * depth)
    if style == "mappings":
        return key, nest(key, "{a: " * depth + "1" + "}" * depth)
    if style == "mixed":
        return key, nest(key, "[{a: " * (depth // 2) + "1" + "}]" * (depth // 2))
    depth = min(depth, 1500)  # block style: indentation makes the text quadratic in the depth
    *sections, name = key.split(".")
    parts = [*sections, name] + [f"k{i}" for i in range(depth)]
    return key, "".join(f"{' ' * n}{p}:\n" for n, p in enumerate(parts)) + " " * len(parts) + "1\n"


@st.composite
def huge_integers(draw) -> tuple[str, str]:
    key = draw(st.sampled_from(LEAF_KEYS))
    digits = draw(st.integers(config.MAX_INTEGER_CHARS + 1, 6000))
    number = draw(st.sampled_from([
        "9" * digits, "-" + "1" * digits, "+" + "7" * digits, "0x" + "f" * digits,
        "0" + "7" * digits, "1" + "_0" * (digits // 2), ":".join(["59"] * (digits // 3))]))
    where = draw(st.sampled_from(["value", "item", "key"]))
    if where == "value":
        return key, nest(key, number)
    if where == "item":
        return key, nest(key, f"[1, {number}]")
    return key, nest(key, "\n" + "  " * (key.count(".") + 1) + f"? {number}\n"
                     + "  " * (key.count(".") + 1) + ": 1")


@st.composite
def duplicate_keys(draw) -> tuple[str, str]:
    """A key given twice, in its section or as a whole section, anything in between."""
    key = draw(st.sampled_from(LEAF_KEYS))
    *sections, name = key.split(".")
    scalars = st.one_of(st.integers(-5, 5), st.text(alphabet="abc-", max_size=4), st.booleans())
    first, second = (yaml.safe_dump(draw(scalars)).split("\n...")[0].strip() for _ in range(2))
    if sections and draw(st.booleans()):  # the section twice
        section = sections[0]
        between = draw(st.sampled_from(["", "log_level: INFO\n", "# a comment\n\n"]))
        return section, (f"{section}:\n  x: {first}\n{between}{section}:\n  y: {second}\n")
    indent = "  " * len(sections)
    head = "".join(f"{'  ' * n}{s}:\n" for n, s in enumerate(sections))
    between = "".join(f"{indent}{other}: 1\n" for other in draw(
        st.lists(st.sampled_from(["zz", "other", "x1"]), unique=True, max_size=3)))
    return key, f"{head}{indent}{name}: {first}\n{between}{indent}{name}: {second}\n"


@st.composite
def huge_strings(draw) -> tuple[str, str]:
    key = draw(st.sampled_from(LEAF_KEYS))
    unit = draw(st.text(min_size=1, max_size=4).filter(lambda t: t.strip()))
    text = unit * draw(st.integers(config.MAX_STRING_CHARS // 4, 200_000))
    *sections, name = key.split(".")
    if draw(st.booleans()):
        doc: Any = {name: "x" + text}
    else:  # a huge key in the key's section (or at the top)
        doc = {text: 1}
        key = ".".join(sections)
    for section in reversed(sections):
        doc = {section: doc}
    return key, yaml.safe_dump(doc, allow_unicode=True, width=10**9)


HOSTILE = st.one_of(alias_bombs(), deep_nesting(), huge_integers(), duplicate_keys(),
                    huge_strings())


def assert_one_short_line(exc: config.ConfigError, key: str) -> None:
    line = str(exc)
    assert exc.source == "pvsim.yaml" and line.startswith("pvsim.yaml: ")
    assert "\n" not in line and len(line) <= config.MAX_ERROR_CHARS, line[:300]
    # the key, or the line of YAML the parser could not read (no key: an explicit ? key of
    # thousands of characters is malformed to libyaml)
    assert exc.key.startswith(key) or exc.problem.startswith("malformed YAML: line"), (key, line)


@HOSTILE_SETTINGS
@given(HOSTILE)
def test_no_file_makes_the_loader_take_more_than_its_caps_or_say_more_than_a_line(case):
    key, text = case
    with pytest.raises(config.ConfigError) as caught:
        load_for_programs(text, "pvsim.yaml")
    assert_one_short_line(caught.value, key)
    event(re.sub(r"[\d,]+", "N", caught.value.problem)[:32])  # which check answered (statistics)


def test_the_hostile_shapes_hit_every_cap():
    """The strategies above reach what they are for (a shape that never reached its cap would
    test nothing): one example of each, at the cap."""
    for text, problem in [
        (nest("log_level", "[&a [1,1,1,1,1,1,1,1,1,1], " + ", ".join(
            f"&b{i} [" + ",".join(["*a" if i == 0 else f"*b{i - 1}"] * 10) + "]"
            for i in range(6)) + "]"), "more than 1,000,000 values"),
        (nest("meter.seed", "[" * 5000 + "]" * 5000), f"nested deeper than {config.MAX_DEPTH}"),
        (nest("meter.seed", "9" * 5000), "an integer of 5,000 characters"),
        ("meter:\n  seed: 1\n  seed: 2\n", "set twice, at line 2 and at line 3"),
    ]:
        with pytest.raises(config.ConfigError, match=problem):
            config.parse(text, "pvsim.yaml")


@pytest.mark.parametrize("prog", sorted(PROGRAMS))
@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(case=HOSTILE)
def test_each_program_says_one_line_and_exits_78_whatever_the_file_holds(prog, case, tmp_path):
    key, text = case
    path, err = program_refuses(prog, text, Path(tmp_path))
    assert err.startswith(f"{prog}: {path}: {key}") or "malformed YAML: line" in err, \
        (err[:300], key)
    assert "Traceback" not in err
