"""YAML's safe loader, bounded: whatever a file holds, reading it costs seconds and megabytes.

A config is a few KiB, and 100,000 meter ids of the longest kind with an account each
(`pricing.accounts`) are 15 MiB and about 300,000 values, which load in a few seconds. The loader
accepts no more than the caps below; aliases count as often as they are used (an alias bomb of
442 bytes expands to 9^10 values), nesting as deep as it goes once they are expanded. A key given
twice in one mapping is an error naming both lines (YAML would keep the second silently). Dates
stay text: the schema reads them, so 2026-02-30 is an error naming its key.
"""

from __future__ import annotations

import typing
from typing import Any

import yaml
from yaml.events import (AliasEvent, CollectionEndEvent, CollectionStartEvent,
                         MappingStartEvent, ScalarEvent)
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from pvsim.config.errors import ConfigError, join_key, shown

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_VALUES = 1_000_000
MAX_DEPTH = 32             # the schema needs 4 (pricing.plans[0].peak_multipliers.monday)
MAX_INTEGER_CHARS = 40     # a config's integers are far shorter; Python refuses 4,300 digits
TOO_LARGE = (f"larger than {MAX_FILE_BYTES // 2**20} MiB: pvsim reads no more (a config is a few "
             "KiB; 100,000 meter ids take 2-15 MiB)")


def read_yaml(text: str, source: str) -> Any:
    """The YAML document as Python values, or one ConfigError: malformed YAML, a key given
    twice (YAML would keep the last silently), or more than the loader accepts (MAX_* above),
    checked before anything is built from it. The file is read three times, each linear: its
    events (depth and count, before the composer, which recurses), its node graph (duplicate
    keys, integers, aliases counted as expanded) and the values built from it."""
    if len(text) > MAX_FILE_BYTES:
        raise ConfigError(source, "", TOO_LARGE)
    loader = _Loader(text)
    try:
        _check_events(_Loader(text), source)
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, loader, source)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(source, "", f"malformed YAML: {where}{problem}")
    except RecursionError:  # defence in depth: _check_events bounds the nesting first
        raise ConfigError(source, "", f"malformed YAML: nested deeper than {MAX_DEPTH} levels")
    finally:
        loader.dispose()


if getattr(yaml, "__with_libyaml__", False):  # Debian's python3-yaml: libyaml, 10 times faster
    from yaml._yaml import CParser as _Parser
else:  # pragma: no cover (a PyYAML without libyaml)
    class _Parser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser,  # type: ignore
                  yaml.composer.Composer):
        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)


class _Loader(_Parser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """YAML's safe loader without its timestamps: a date stays text until the schema reads it,
    so 2026-02-30 is an error naming its key, not a ValueError from inside the YAML parser. A
    value its tag cannot make (`!!int abc`, `!!bool maybe`) is a YAML error at its line."""

    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            raise yaml.constructor.ConstructorError(
                None, None, f"not a valid {shown(node.tag.rpartition(':')[2])} value",
                node.start_mark) from None


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_INT_TAG, _STR_TAG, _MERGE_TAG = (f"tag:yaml.org,2002:{t}" for t in ("int", "str", "merge"))


def _check_events(loader: _Loader, source: str) -> None:
    """The document's nesting and size, from the parser's events alone (a flat loop), before
    the composer, which recurses once per level: 5,000 levels would be a RecursionError."""
    frames: list[list] = []  # per open collection: [is_mapping, next is a key, key or index]
    count = 0
    try:
        while not loader.check_event(yaml.StreamEndEvent):
            event = loader.get_event()
            if isinstance(event, CollectionEndEvent):
                frames.pop()
                continue
            if not isinstance(event, (CollectionStartEvent, ScalarEvent, AliasEvent)):
                continue
            count += 1
            if frames:
                top = frames[-1]
                if not top[0]:
                    top[2] += 1
                elif top[1]:
                    top[2] = event.value if isinstance(event, ScalarEvent) else "(a key)"
                if top[0]:
                    top[1] = not top[1]
            if count > MAX_VALUES:
                raise ConfigError(source, _path((f[2] for f in frames), keys_only=True),
                                  f"more than {MAX_VALUES:,} values: pvsim reads no more")
            if isinstance(event, CollectionStartEvent):
                if len(frames) >= MAX_DEPTH:
                    raise ConfigError(source, _path((f[2] for f in frames), keys_only=True),
                                      f"nested deeper than {MAX_DEPTH} levels (line "
                                      f"{event.start_mark.line + 1}): pvsim reads no deeper")
                frames.append([isinstance(event, MappingStartEvent), True, -1])
    finally:
        loader.dispose()


def _check_nodes(root: yaml.Node, loader: _Loader, source: str) -> None:
    """The node graph as the values built from it will be: no key twice in a mapping (YAML
    keeps the last one silently, so the first is ignored), no integer longer than
    MAX_INTEGER_CHARS, and, each alias counted wherever it is used, at most MAX_VALUES values
    nested at most MAX_DEPTH deep. Linear in the nodes the file writes, whatever its aliases
    make of them: each node is checked once, and what it stands for once expanded is summed
    from its children's (a node met again through an alias is not walked again)."""
    size: dict[int, int] = {}    # id(collection): the values it stands for, expanded (capped)
    height: dict[int, int] = {}  # id(collection): its nesting, expanded (a scalar's is 1)
    entered: set[int] = set()    # the nodes on the walk's path: met again, a node holds itself
    _check_scalar(root, (), source)
    stack: list[tuple[yaml.Node, tuple, list | None]] = [(root, (), None)]
    while stack:
        node, parts, kids = stack.pop()  # kids: None when entered, its children when done
        if isinstance(node, ScalarNode):
            continue
        if kids is not None:
            size[id(node)] = min(1 + sum(size.get(id(k), 1) for _, k in kids), MAX_VALUES + 1)
            height[id(node)] = 1 + max((height.get(id(k), 1) for _, k in kids), default=0)
            entered.discard(id(node))
            continue
        if id(node) in size:
            continue
        if id(node) in entered:
            _too_large(root, size, height, source)
        entered.add(id(node))
        if isinstance(node, MappingNode):
            _check_keys(node, loader, source, parts)
        kids = _children(node)
        stack.append((node, parts, kids))
        for part, kid in reversed(kids):  # scalars here, collections when popped
            if isinstance(kid, ScalarNode):
                _check_scalar(kid, (*parts, part) if kid.tag == _INT_TAG else parts, source)
            else:
                stack.append((kid, (*parts, part), None))
    if size.get(id(root), 1) > MAX_VALUES or height.get(id(root), 1) > MAX_DEPTH + 1:
        _too_large(root, size, height, source)


def _check_scalar(node: yaml.Node, parts: tuple, source: str) -> None:
    if isinstance(node, ScalarNode) and node.tag == _INT_TAG and len(node.value) > MAX_INTEGER_CHARS:
        raise ConfigError(source, _path(parts), f"an integer of {len(node.value):,} characters: "
                          f"pvsim reads at most {MAX_INTEGER_CHARS}")


def _children(node: yaml.Node) -> list[tuple[str | int, yaml.Node]]:
    """A node's children, each with its part of a key path (a mapping's keys too)."""
    if isinstance(node, SequenceNode):
        return list(enumerate(node.value))
    if isinstance(node, MappingNode):
        return [(_key_name(k), n) for k, v in node.value for n in (k, v)]
    return []


def _too_large(root: yaml.Node, size: dict[int, int], height: dict[int, int],
               source: str) -> typing.NoReturn:
    """The error for a document too large or too deep once its aliases are expanded (or one
    holding itself: unfinished in `size`), naming the key whose value is."""
    def bad(node: yaml.Node, level: int) -> bool:
        if isinstance(node, ScalarNode):
            return False
        return (id(node) not in size or size[id(node)] > MAX_VALUES
                or height[id(node)] + level > MAX_DEPTH + 1)
    parts, node, level = [], root, 0
    while isinstance(node, MappingNode):
        found = next(((k, v) for k, v in node.value if bad(v, level + 1)), None)
        if found is None:
            break
        parts.append(_key_name(found[0]))
        node, level = found[1], level + 1
    what = ("holds itself" if id(node) not in size else f"more than {MAX_VALUES:,} values"
            if size[id(node)] > MAX_VALUES else f"nested deeper than {MAX_DEPTH} levels")
    raise ConfigError(source, _path(parts), f"{what} once its YAML aliases are expanded (an "
                      f"alias bomb? line {node.start_mark.line + 1}): pvsim reads no more")


def _check_keys(node: MappingNode, loader: _Loader, source: str, parts: tuple) -> None:
    """No key twice in one mapping; a key as the program reads it (1234 and '1234' are one)."""
    first: dict[str, yaml.Node] = {}
    for key, _ in node.value:
        if not isinstance(key, ScalarNode) or key.tag == _MERGE_TAG:
            continue
        name = key.value
        if key.tag != _STR_TAG and not (key.tag == _INT_TAG and len(key.value) > MAX_INTEGER_CHARS):
            try:
                name = str(loader.construct_object(key))
            except yaml.YAMLError:
                pass  # construction says what is wrong with it, at its line
        seen = first.setdefault(name, key)
        if seen is not key:
            raise ConfigError(source, _path((*parts, key.value)), f"set twice, at line "
                              f"{seen.start_mark.line + 1} and at line {key.start_mark.line + 1} "
                              "(YAML would keep the second silently): remove one")


def _key_name(key: yaml.Node) -> str:
    return key.value if isinstance(key, ScalarNode) else "(a key)"


def _path(parts: Any, keys_only: bool = False) -> str:
    """A dotted key path from mapping keys and list indices: meter.id[3]; at most 8 parts, or
    with `keys_only` the keys before the first index (the key whose value is too large)."""
    text = ""
    for n, part in enumerate(parts):
        if keys_only and isinstance(part, int):
            break
        if n == 8:
            return text + "..."
        text = f"{text}[{part}]" if isinstance(part, int) else join_key(text, part)
    return text or "(top level)"
